#!/usr/bin/env bash
# Load test of `dsv3 serve` (bench/serve_load.mjs): a random v3-tiny model served with --parallel 8
# --ctx 512 --max-queue 128, 64 concurrent streaming clients of 3 requests each, about a tenth aborted
# mid-stream. Fails if a request is lost, hangs or ends uncleanly, if KV pages stay used afterwards, if
# the server's peak RSS exceeds model bytes + KV pool bytes (as the server prints it) + 256 MiB, or if the
# server does not exit with status 0 on SIGINT. Prints serve_load.mjs's JSON line.
#   bash bench/serve_load.sh [BUILD_DIR]        (default build/; needs node >= 18 and deps/npm's tokenizer)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
dsv3=$build/dsv3
allowance_mib=256  # threads' stacks, HTTP buffers, tokenizer, activations, allocator slack
[[ -x $dsv3 ]] || { echo "serve_load: $dsv3 is missing (build the 'dsv3' target)" >&2; exit 1; }

work=$(mktemp -d "$build/serve_load.XXXXXX") || exit 1
server_pid=""
cleanup() {
  if [[ -n $server_pid ]]; then
    kill -KILL "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "serve_load: FAIL $1" >&2
  tail -n 20 "$work/serve.err" 2>/dev/null | sed 's/^/  | /' >&2
  exit 1
}

"$dsv3" init --preset v3-tiny --out "$work/model" --seed 1 >"$work/init.log" 2>&1 ||
  { tail -n 5 "$work/init.log" >&2; fail "dsv3 init --preset v3-tiny"; }
"$dsv3" serve --model "$work/model" --port 0 --parallel 8 --ctx 512 --max-queue 128 \
  >"$work/serve.out" 2>"$work/serve.err" &
server_pid=$!
ready=""
for _ in $(seq 1 1200); do
  ready=$(grep -m 1 '\[serve\] ready:' "$work/serve.out")
  [[ -n $ready ]] && break
  kill -0 "$server_pid" 2>/dev/null || fail "dsv3 serve exited before it was ready"
  sleep 0.1
done
[[ -n $ready ]] || fail "dsv3 serve was not ready within 120 s"
url=$(grep -o -m 1 'http://[0-9.]*:[0-9]*' "$work/serve.err")
echo "serve_load: $ready" >&2

# The bound: the weights (the server maps the safetensors files) + the KV pool it printed + the allowance.
model_mib=$(du -b --apparent-size -c "$work"/model/*.safetensors | tail -n 1 | awk '{print $1 / 1048576}')
kv_mib=$(sed -n 's/.*KV pages (\([0-9.]*\) MiB).*/\1/p' <<<"$ready")
[[ -n $kv_mib ]] || fail "no KV pool size in the ready line: $ready"
bound_mib=$(awk -v m="$model_mib" -v k="$kv_mib" -v a="$allowance_mib" 'BEGIN {printf "%.1f", m + k + a}')
echo "serve_load: RSS bound $bound_mib MiB = model $model_mib MiB + KV pool $kv_mib MiB + $allowance_mib MiB" >&2

timeout 330 node "$root/bench/serve_load.mjs" --url "$url" --pid "$server_pid" --rss-bound-mib "$bound_mib" \
  --clients 64 --requests 3 --abort-fraction 0.1 --timeout-s 300
rc=$?
[[ $rc == 0 ]] || fail "serve_load.mjs exit status $rc"

kill -INT "$server_pid"
wait "$server_pid"
rc=$?
server_pid=""
[[ $rc == 0 ]] || fail "dsv3 serve exited with status $rc after SIGINT"
echo "serve_load: ok (the server stopped on SIGINT with status 0)" >&2
