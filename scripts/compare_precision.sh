#!/usr/bin/env bash
# The FP8-vs-BF16 comparison of docs/TRAINING.md (DeepSeek-V3 TR §3.3: FP8 training tracks BF16 within
# 0.25% relative loss): one preset trained in BF16 and in FP8 from the same seed on the same tokens, then
# one set of plots and a summary table with the relative val-loss difference.
#
#   scripts/compare_precision.sh [PRESET=tiny] [STEPS=1000] [OUT=runs/precision-PRESET]
#
# Token shards: Brown with the preset's vocabulary (made here when missing: 4096 ids for tiny, 16384
# for small). Each run resumes if it was interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-tiny}
steps=${2:-1000}
out=${3:-runs/precision-$preset}
dsv3=./build/dsv3
case $preset in
  tiny) vocab=4096 ;;
  small) vocab=16384 ;;
  *) echo "compare_precision.sh: preset must be tiny or small, got '$preset'" >&2; exit 1 ;;
esac
tokenizer=data/tok$((vocab / 1024))k/tokenizer.json
shards=data/brown-$((vocab / 1024))k
[[ -f $tokenizer ]] || $dsv3 train-tokenizer --corpus brown --vocab-size "$vocab" --out "$tokenizer"
[[ -f $shards/manifest.json ]] || $dsv3 data --tokenizer "$tokenizer" --corpus brown --out "$shards"

for precision in bf16 fp8; do
  dir=$out/$precision
  if [[ -f $dir/trainer_state.json ]]; then
    $dsv3 train --resume "$dir" --steps "$steps" --quiet
  else
    $dsv3 train --preset "$preset" --data "$shards" --steps "$steps" --precision "$precision" --seed 1 --out "$dir" --quiet
  fi
done
$dsv3 plot --metrics "$out/bf16/metrics.jsonl" --label bf16 --metrics "$out/fp8/metrics.jsonl" --label fp8 \
  --out "$out/plots" --title "$preset, $steps steps"
