#!/usr/bin/env bash
# The chat page of `dsv3 serve` (GET /) in a real browser: Debian's headless Chromium driven by
# playwright-core (tests/browser/chat_page.mjs) over a random v3-tiny model. The page must show the model's
# name; a message typed and sent with Enter must stream a reply into the assistant bubble, which ends with
# data-state="done" and a tokens/s stats line; the page must fetch from the server only, with no script
# errors. The server then stops on SIGINT with exit status 0. A screenshot of the finished chat is saved to
# BUILD_DIR/test-output/browser/chat_page.png.
# Chromium and playwright-core are installed by `DSV3_BROWSER_TESTS=1 scripts/setup.sh` (scripts/test.sh
# does so when its selection includes this test); without them the test fails, it never skips.
#   bash tests/browser/chat_page.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
BUILD_DIR=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
dsv3=$BUILD_DIR/dsv3
chromium=/usr/bin/chromium
playwright=$src/deps/browser/node_modules/playwright-core
install_hint="install them with: DSV3_BROWSER_TESTS=1 bash scripts/setup.sh (bash scripts/test.sh does when it runs browser tests)"

[[ -x $dsv3 ]] || { echo "FAIL: $dsv3 does not exist or is not executable (build the 'dsv3' target first)"; exit 1; }
[[ -x $chromium ]] || { echo "FAIL: no browser: $chromium is missing (Debian package 'chromium'); $install_hint"; exit 1; }
command -v node >/dev/null || { echo "FAIL: node is missing (Node.js >= 18 runs playwright-core)"; exit 1; }
[[ -f $playwright/package.json ]] || { echo "FAIL: playwright-core is missing from $playwright; $install_hint"; exit 1; }

WORK=$(mktemp -d "$BUILD_DIR/chat_page.XXXXXX") || { echo "FAIL: cannot make a directory under $BUILD_DIR"; exit 1; }
server_pid=""
cleanup() {
  if [[ -n $server_pid ]]; then
    kill -KILL "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
out_dir=$BUILD_DIR/test-output/browser
mkdir -p "$out_dir"
screenshot=$out_dir/chat_page.png
rm -f "$screenshot"
fail() {
  echo "  FAIL $1"
  local log
  for log in "$WORK"/serve.out "$WORK"/serve.err; do
    [[ -f $log ]] && tail -n 15 "$log" | sed "s#^#       | $(basename "$log"): #"
  done
  exit 1
}

# The model's directory name is the id the server reports and the page shows.
model=$WORK/v3-tiny-random
"$dsv3" init --preset v3-tiny --out "$model" --seed 7 >"$WORK/init.log" 2>&1 ||
  { tail -n 5 "$WORK/init.log"; fail "dsv3 init --preset v3-tiny (its tokenizer comes from deps/npm: scripts/setup.sh)"; }
echo "  ok   dsv3 init --preset v3-tiny"

# --ctx bounds the reply: the page sends no max_tokens.
"$dsv3" serve --model "$model" --port 0 --ctx 256 --parallel 2 >"$WORK/serve.out" 2>"$WORK/serve.err" &
server_pid=$!
url=""
for _ in $(seq 1 600); do
  url=$(grep -o -m 1 'listening on http://[0-9.]*:[0-9]*' "$WORK/serve.err" | sed 's/^listening on //')
  [[ -n $url ]] && break
  kill -0 "$server_pid" 2>/dev/null || fail "dsv3 serve exited before listening"
  sleep 0.1
done
[[ -n $url ]] || fail "dsv3 serve printed no 'listening on' line in 60 s"
health=""
for _ in $(seq 1 600); do
  health=$(node -e 'fetch(process.argv[1]).then(r => console.log(r.status), () => console.log(0))' "$url/health")
  [[ $health == 200 ]] && break
  kill -0 "$server_pid" 2>/dev/null || fail "dsv3 serve exited while loading"
  sleep 0.1
done
[[ $health == 200 ]] || fail "$url/health did not answer 200 within 60 s (last: $health)"
echo "  ok   dsv3 serve at $url: /health 200"

mkdir "$WORK/profile"
timeout 180 node "$src/tests/browser/chat_page.mjs" --url "$url/" --model-id v3-tiny-random --chromium "$chromium" \
  --playwright "$playwright" --profile "$WORK/profile" --screenshot "$screenshot"
rc=$?
[[ $rc == 124 ]] && fail "chat_page.mjs took over 180 s"
[[ $rc == 0 ]] || fail "the browser checks (chat_page.mjs exit $rc)"
[[ -s $screenshot ]] || fail "no screenshot at $screenshot"

kill -INT "$server_pid"
wait "$server_pid"
rc=$?
server_pid=""
[[ $rc == 0 ]] || fail "dsv3 serve exited with status $rc after SIGINT"
echo "  ok   dsv3 serve stopped on SIGINT with status 0"
echo "chat_page: ok; screenshot $screenshot"
