#!/usr/bin/env bash
# The load-balancing ablation of docs/TRAINING.md: the `tiny` preset trained three times on the same
# tokens from the same seed — auxiliary-loss-free balancing (DeepSeek-V3: bias update + sequence-wise
# loss α 1e-4), the classic auxiliary loss (α 1e-3, no bias update), and no balancing — then one set of
# plots and a summary table (val loss, MaxVio) comparing them.
#
#   scripts/ablate_balance.sh [STEPS=1000] [OUT=runs/ablation-balance]
#
# Expects build/dsv3 and the Brown token shards of scripts/quickstart.sh (made here when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-1000}
out=${2:-runs/ablation-balance}
dsv3=./build/dsv3
tokenizer=data/tok4k/tokenizer.json
shards=data/brown-4k
[[ -f $tokenizer ]] || $dsv3 train-tokenizer --corpus brown --vocab-size 4096 --out "$tokenizer"
[[ -f $shards/manifest.json ]] || $dsv3 data --tokenizer "$tokenizer" --corpus brown --out "$shards"

metrics=()
labels=()
for mode in aux-free aux-loss none; do
  dir=$out/$mode
  if [[ -f $dir/trainer_state.json ]]; then
    $dsv3 train --resume "$dir" --steps "$steps" --quiet
  else
    $dsv3 train --preset tiny --data "$shards" --steps "$steps" --balance "$mode" --seed 1 --out "$dir" --quiet
  fi
  metrics+=(--metrics "$dir/metrics.jsonl")
  labels+=(--label "$mode")
done
$dsv3 plot "${metrics[@]}" "${labels[@]}" --out "$out/plots" --title "tiny, $steps steps"
