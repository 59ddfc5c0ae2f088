#!/usr/bin/env bash
# End-to-end check of training from the CLI: train-tokenizer -> data -> train -> (stop, resume) -> plot ->
# generate / logits / info / perplexity on the trained checkpoint -> quantize it to FP8 -> FP8 training,
# with a small config so it runs in seconds. Every step's output is checked for content
# (tests/cli/lib/cli_checks.py says how, and prints what it compared):
#   - metrics hold one line per step 1..N with the tokens of N steps, and the checkpoint is at step N;
#     `--stop-at 4` leaves 4 step lines and a checkpoint at step 4 with the uninterrupted run's losses;
#     the resumed run continues at step 5, keeps the first 4 lines and ends with the same losses and the
#     same weights, bit for bit, as the uninterrupted 8-step run (same thread count);
#   - the plots are PNGs of their size with the run's lines drawn; the expert-load heatmap has a panel
#     per MoE layer with each cell red or blue as its load is above or below the mean; summary.md's
#     figures are the metrics file's;
#   - the trained model chats (train-tokenizer adds DeepSeek's chat tokens), its reply equal to generate
#     --messages;
#   - generate --temp 0 prints the tokens that dsv3 logits' argmax picks; logits agree between attention
#     forms and with a prefix run; info's counts are those of the checkpoint's tensors; perplexity is
#     exp(cross-entropy), below the vocabulary size, equal to the cross-entropy of dsv3 logits and to the
#     trainer's val_loss on the same windows, and within FP8 rounding for the quantized checkpoint,
#     whose layout is DeepSeek's; FP8 training starts where BF16 training does;
#   - bad input (missing shards, an --out that already holds a run) gives a clear error.
#   bash tests/cli/train_smoke.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"
BUILD_DIR=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
dsv3=$BUILD_DIR/dsv3
require_dsv3 "$dsv3"
find_numpy_python train_smoke
make_work_dir train_smoke
failures=0
RUN_COUNT_FAILURES=1

# The project's own documentation, cut into paragraphs, and a small MoE config (lib/common.sh).
small_training_data || exit 1
train=("$dsv3" train --config "$WORK/config.json" --data "$WORK/shards" --batch-size 4 --seq-len 64
       --eval-every 4 --eval-sequences 4 --threads 2 --quiet)

run "train 8 steps" "${train[@]}" --steps 8 --out "$WORK/straight"
check "metrics of steps 1..8, checkpoint at step 8" metrics "$WORK/straight/metrics.jsonl" --steps 8 \
  --state "$WORK/straight"
run "train 8 steps, stop at 4" "${train[@]}" --steps 8 --stop-at 4 --out "$WORK/resumed"
check "--stop-at 4 stopped at step 4 with the uninterrupted run's losses" metrics "$WORK/resumed/metrics.jsonl" \
  --steps 4 --state "$WORK/resumed" --same-losses-as "$WORK/straight/metrics.jsonl"
cp "$WORK/resumed/metrics.jsonl" "$WORK/metrics_at_step_4.jsonl"
run "resume" "$dsv3" train --resume "$WORK/resumed" --threads 2 --quiet
expect_in_log "resume starts after step 4" "resuming .* at step 4 of 8"
check "resumed run: steps 5..8 appended, the uninterrupted run's losses" metrics "$WORK/resumed/metrics.jsonl" \
  --steps 8 --state "$WORK/resumed" --same-losses-as "$WORK/straight/metrics.jsonl" \
  --kept "$WORK/metrics_at_step_4.jsonl"
if cmp -s "$WORK/straight/model.safetensors" "$WORK/resumed/model.safetensors"; then
  echo "  ok   resumed weights are bit-identical"
else
  echo "  FAIL resumed weights differ from the uninterrupted run's"
  failures=$((failures + 1))
fi

run "plot" "$dsv3" plot --metrics "$WORK/straight/metrics.jsonl" --out "$WORK/plots"
# Run 0's colour is #1f77b4 (src/plot/chart.cpp). Its lines, ~2 pixels wide across a ~1100-pixel plot,
# cover over 1000 pixels of it; the legend's swatches fewer than 100: at least 500 means a line is drawn.
for chart in "loss 700" "max_vio 700" "lr 500"; do
  read -r name height <<<"$chart"
  check "plots/$name.png is a 1200x$height chart with the run's lines" png "$WORK/plots/$name.png" \
    --width 1200 --height "$height" --color 1f77b4 --min-pixels 500
done
check "plots/expert_load_straight.png shows each MoE layer's loads" heatmap "$WORK/plots/expert_load_straight.png" \
  "$WORK/straight/metrics.jsonl"
check "plots/summary.md holds the metrics' figures" summary "$WORK/plots/summary.md" "$WORK/straight/metrics.jsonl" \
  --label straight

model=$WORK/straight
check "generate --temp 0 prints the argmax tokens of dsv3 logits" greedy --dsv3 "$dsv3" --work "$WORK" \
  --model "$model" --prompt "The model" -n 8
check "the trained model chats in DeepSeek's format; the reply equals generate --messages" chat --dsv3 "$dsv3" \
  --work "$WORK" --model "$model" -n 6 --precision f32 --user "What does the model do?"
check_logits "$model" "0,5,9,12" "0,5" 320
check "info counts the checkpoint's parameters and bytes" info --dsv3 "$dsv3" --model "$model"
run "quantize the checkpoint to FP8" "$dsv3" quantize --model "$model" --out "$WORK/fp8model" --fp8
check "the FP8 checkpoint is DeepSeek's layout" quantized --source "$model" --out "$WORK/fp8model"
check "perplexity: exp(ce), the cross-entropy of dsv3 logits and of the trainer, FP8 close" perplexity \
  --dsv3 "$dsv3" --work "$WORK" --model "$model" --shards "$WORK/shards" --seq-len 64 --windows 4 \
  --val-loss-from "$model/metrics.jsonl" --fp8-model "$WORK/fp8model"
run "train in fp8" "${train[@]}" --steps 2 --precision fp8 --out "$WORK/fp8"
check "FP8 training's first step is BF16's within FP8 rounding" fp8-train "$WORK/fp8/metrics.jsonl" \
  "$WORK/straight/metrics.jsonl"

# Errors: exit 1 with the reason on stderr.
expect_error "an --out holding a run is refused" "--resume" "${train[@]}" --steps 8 --out "$WORK/straight"
expect_error "missing shards are named" "manifest.json" "$dsv3" train --config "$WORK/config.json" \
  --data "$WORK/nothing" --steps 2 --out "$WORK/x"
expect_error "resume needs a checkpoint" "not a checkpoint written by dsv3 train" "$dsv3" train --resume "$WORK/shards"
expect_error "fewer eval sequences than a batch are refused before training" "--eval-sequences 2 is fewer than one batch" \
  "$dsv3" train --config "$WORK/config.json" --data "$WORK/shards" --batch-size 4 --eval-sequences 2 --steps 2 \
  --out "$WORK/few_eval"

echo "train_smoke: $failures failure(s)"
exit $((failures > 0))
