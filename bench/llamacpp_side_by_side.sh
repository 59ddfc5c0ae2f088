#!/usr/bin/env bash
# dsv3 against llama.cpp on the same model and the same tokens, CPU, two threads each.
#
#   bash bench/llamacpp_side_by_side.sh [--model DIR] [--runs N] [--prompt TOKENS] [--decode STEPS]
#                                       [--threads T] [--build DIR]
#
# The model (default: the inference benchmark's v3-1.5g preset, made once with
# `dsv3 init --preset v3-1.5g --seed 7` under BUILD/bench-models/v3-1.5g-side-by-side; BF16 weights and
# DeepSeek-V3's tokenizer) is exported with `dsv3 export --gguf --type bf16` (redone when the checkpoint is
# newer). Then:
#   1. validation: llama.cpp's logits of the prompt's first 16 tokens against `dsv3 logits` (f32): the
#      median over positions of max |diff| must be within 2^-6 of the largest logit, the bound
#      tests/cli/export_gguf.sh uses for BF16 files (the median, as bench_model checks, because bf16
#      rounding can turn a random router's near-tie at a single position);
#   2. a prompt of exactly --prompt tokens (default 512, BOS included) from README.md, as both tokenize it;
#   3. one warm-up run of each, then --runs (default 5) runs of each, alternating llama.cpp / dsv3. A run
#      is a prefill of the prompt and --decode (default 64) greedy decode steps of one token each:
#      llama.cpp through node-llama-cpp (bench/llamacpp_side_by_side.mjs; its defaults: F16 KV cache,
#      flash attention "auto", prefill in one batch), dsv3 as `dsv3 generate --temp 0 --ignore-eos`
#      (bf16 activations, its default) reading the tokens/s it prints. Loading is outside both timings.
# Prints each run's tokens/s, then one JSON line per case (prefill, decode) with the runs, the medians and
# dsv3's median over llama.cpp's. Needs node and deps/npm's node-llama-cpp (scripts/npm-deps.sh).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build
model=""
runs=5
prompt_tokens=512
decode=64
threads=2
while [[ $# -gt 0 ]]; do
  case $1 in
    --model) model=$2 ;;
    --runs) runs=$2 ;;
    --prompt) prompt_tokens=$2 ;;
    --decode) decode=$2 ;;
    --threads) threads=$2 ;;
    --build) build=$2 ;;
    *) echo "usage: $0 [--model DIR] [--runs N] [--prompt TOKENS] [--decode STEPS] [--threads T] [--build DIR]" >&2
       exit 2 ;;
  esac
  shift 2
done
build=$(cd "$build" && pwd)
dsv3=$build/dsv3
npm_dir=$root/deps/npm
side=$root/bench/llamacpp_side_by_side.mjs
logits=$root/tests/cli/lib/llama_logits.mjs
fail() { echo "llamacpp_side_by_side: FAIL $*" >&2; exit 1; }
[[ -x $dsv3 ]] || fail "$dsv3 is missing (build the 'dsv3' target)"
command -v node >/dev/null 2>&1 || fail "node is missing (scripts/setup.sh installs Node.js)"
[[ -f $npm_dir/node_modules/node-llama-cpp/package.json ]] || fail "node-llama-cpp is missing (run scripts/npm-deps.sh)"

if [[ -z $model ]]; then
  model=$build/bench-models/v3-1.5g-side-by-side
  if [[ ! -f $model/config.json ]]; then
    echo "[side-by-side] creating $model (dsv3 init --preset v3-1.5g --seed 7)" >&2
    "$dsv3" init --preset v3-1.5g --seed 7 --out "$model" --shard-mb 1000 >&2 || fail "dsv3 init"
  fi
fi
[[ -f $model/tokenizer.json ]] || fail "$model has no tokenizer.json (llama.cpp and dsv3 generate need it)"
gguf=$model.bf16.gguf
if [[ ! -f $gguf || -n $(find "$model" -newer "$gguf" -name '*.safetensors' -print -quit) ]]; then
  "$dsv3" export --model "$model" --gguf "$gguf" --type bf16 --force >&2 || fail "dsv3 export"
fi

work=$(mktemp -d "$build/side_by_side.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT

node "$side" prompt --npm "$npm_dir" --model "$gguf" --tokens "$prompt_tokens" --source "$root/README.md" \
  --out "$work/prompt.txt" >&2 2>"$work/prompt.err" || { cat "$work/prompt.err" >&2; fail "making the prompt"; }

# 1. Validation on the first 16 prompt tokens (dsv3's own tokenization of the prompt).
ids=$("$dsv3" tokenize --model "$model" --bos <"$work/prompt.txt" | tr -d ' \n[]' | cut -d, -f1-16)
"$dsv3" logits --model "$model" --tokens "$ids" --out "$work/dsv3.npy" 2>"$work/logits.err" ||
  { cat "$work/logits.err" >&2; fail "dsv3 logits"; }
node "$logits" logits --npm "$npm_dir" --model "$gguf" --tokens "$ids" --out "$work/llama.npy" >/dev/null 2>&1 ||
  fail "llama.cpp logits"
check=$(node "$logits" compare --expected "$work/dsv3.npy" --actual "$work/llama.npy" --bound 0.015625 \
  --criterion median) ||
  fail "llama.cpp's logits disagree with dsv3's: $check"
echo "[side-by-side] validation, 16 tokens: $check" >&2

# One run of each engine; prints "prefill_tok_s decode_tok_s".
run_llama() {
  local out
  out=$(node "$side" run --npm "$npm_dir" --model "$gguf" --prompt "$work/prompt.txt" --decode "$decode" \
    --threads "$threads" 2>"$work/llama.err") || { tail -n 5 "$work/llama.err" >&2; fail "llama.cpp run"; }
  node -e '
    const r = JSON.parse(process.argv[1]);
    if (r.prompt_tokens !== Number(process.argv[2]) || r.decode_steps !== Number(process.argv[3]))
      throw new Error(`llama.cpp ran ${r.prompt_tokens} prompt tokens and ${r.decode_steps} decode steps`);
    console.log(r.prompt_tokens / r.prefill_s, r.decode_steps / r.decode_s);' "$out" "$prompt_tokens" "$decode"
}
run_dsv3() {
  "$dsv3" generate --model "$model" --prompt "$(cat "$work/prompt.txt")" -n $((decode + 1)) --temp 0 --ignore-eos \
    --threads "$threads" >/dev/null 2>"$work/dsv3.err" || { tail -n 5 "$work/dsv3.err" >&2; fail "dsv3 generate"; }
  local line
  line=$(grep -o 'prompt [0-9]* tokens: prefill [0-9.]* tokens/s | generated [0-9]* tokens: decode [0-9.]* tokens/s' \
    "$work/dsv3.err") || fail "no timing line from dsv3 generate: $(tail -n 2 "$work/dsv3.err")"
  read -r _ n _ _ prefill _ _ _ generated _ _ decode_rate _ <<<"$line"
  [[ $n == "$prompt_tokens" && $generated == $((decode + 1)) ]] ||
    fail "dsv3 ran $n prompt tokens and generated $generated (expected $prompt_tokens and $((decode + 1)))"
  echo "$prefill $decode_rate"
}

echo "[side-by-side] warm-up" >&2
run_llama >/dev/null || exit 1
run_dsv3 >/dev/null || exit 1
llama_prefill=() llama_decode=() dsv3_prefill=() dsv3_decode=()
for ((i = 1; i <= runs; i++)); do
  out=$(run_llama) || exit 1
  read -r p d <<<"$out"
  llama_prefill+=("$p") llama_decode+=("$d")
  printf '[side-by-side] run %d  llama.cpp prefill %8.1f tok/s  decode %7.2f tok/s\n' "$i" "$p" "$d" >&2
  out=$(run_dsv3) || exit 1
  read -r p d <<<"$out"
  dsv3_prefill+=("$p") dsv3_decode+=("$d")
  printf '[side-by-side] run %d  dsv3      prefill %8.1f tok/s  decode %7.2f tok/s\n' "$i" "$p" "$d" >&2
done

release=$(node -p "require('$npm_dir/node_modules/node-llama-cpp/llama/llama.cpp.info.json').tag")
version=$(node -p "require('$npm_dir/node_modules/node-llama-cpp/package.json').version")
report() {  # case tokens dsv3-runs llama-runs
  node -e '
    const [name, tokens, dsv3, llama, model, threads, release, version] = process.argv.slice(1);
    const runs = (s) => s.split(" ").map(Number);
    const median = (a) => { const s = [...a].sort((x, y) => x - y), m = s.length >> 1;
                            return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
    const d = runs(dsv3), l = runs(llama);
    console.log(JSON.stringify({
      bench: "llamacpp_side_by_side", case: name, tokens: Number(tokens), model, threads: Number(threads),
      llama_cpp: release, node_llama_cpp: version, dsv3_tok_s: d, llama_cpp_tok_s: l,
      dsv3_median: median(d), llama_cpp_median: median(l), dsv3_over_llama_cpp: median(d) / median(l) }));
  ' "$1" "$2" "$3" "$4" "$model" "$threads" "$release" "$version"
}
report prefill "$prompt_tokens" "${dsv3_prefill[*]}" "${llama_prefill[*]}"
report decode "$decode" "${dsv3_decode[*]}" "${llama_decode[*]}"
