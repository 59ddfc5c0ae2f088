#!/usr/bin/env bash
# End-to-end check of training from the CLI: train-tokenizer -> data -> train -> (interrupt, resume) ->
# plot -> generate / logits / info / perplexity on the trained checkpoint -> quantize it to FP8, with a
# small config so it runs in seconds.
#   - a run stopped at step 4 and resumed to step 8 writes the same weights, bit for bit, as an
#     uninterrupted 8-step run (same thread count);
#   - the checkpoint loads in the inference commands;
#   - bad input (missing shards, an --out that already holds a run) gives a clear error.
#   bash tests/cli/train_smoke.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"
BUILD_DIR=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
dsv3=$BUILD_DIR/dsv3
require_dsv3 "$dsv3"
make_work_dir train_smoke
failures=0
RUN_COUNT_FAILURES=1

# Text: the project's own documentation, cut into paragraphs.
cat "$src"/README.md "$src"/docs/*.md >"$WORK/corpus.txt"
cat >"$WORK/config.json" <<'JSON'
{"model_type": "deepseek_v3", "vocab_size": 320, "hidden_size": 64, "intermediate_size": 96,
 "moe_intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2,
 "q_lora_rank": 32, "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
 "n_routed_experts": 8, "n_shared_experts": 1, "num_experts_per_tok": 2, "first_k_dense_replace": 1,
 "moe_layer_freq": 1, "n_group": 4, "topk_group": 2, "scoring_func": "sigmoid", "topk_method": "noaux_tc",
 "norm_topk_prob": true, "routed_scaling_factor": 2.5, "rope_theta": 10000, "max_position_embeddings": 4096,
 "rms_norm_eps": 1e-6, "num_nextn_predict_layers": 1, "tie_word_embeddings": false,
 "bos_token_id": 0, "eos_token_id": 1}
JSON
train=("$dsv3" train --config "$WORK/config.json" --data "$WORK/shards" --batch-size 4 --seq-len 64
       --eval-every 4 --eval-sequences 4 --threads 2 --quiet)

run "train-tokenizer" "$dsv3" train-tokenizer --input "$WORK/corpus.txt" --vocab-size 320 --out "$WORK/tok/tokenizer.json" --quiet
run "data" "$dsv3" data --tokenizer "$WORK/tok/tokenizer.json" --input "$WORK/corpus.txt" --doc-separator $'\n\n' \
  --val-fraction 0.2 --out "$WORK/shards" --quiet
run "train 8 steps" "${train[@]}" --steps 8 --out "$WORK/straight"
run "train 8 steps, stop at 4" "${train[@]}" --steps 8 --stop-at 4 --out "$WORK/resumed"
run "resume" "$dsv3" train --resume "$WORK/resumed" --threads 2 --quiet
if cmp -s "$WORK/straight/model.safetensors" "$WORK/resumed/model.safetensors"; then
  echo "  ok   resumed weights are bit-identical"
else
  echo "  FAIL resumed weights differ from the uninterrupted run's"
  failures=$((failures + 1))
fi
lines=$(grep -c '"step"' "$WORK/resumed/metrics.jsonl")
if [ "$lines" = 8 ]; then echo "  ok   metrics has 8 step lines"; else
  echo "  FAIL metrics has $lines step lines, expected 8"; failures=$((failures + 1)); fi

run "plot" "$dsv3" plot --metrics "$WORK/straight/metrics.jsonl" --out "$WORK/plots"
for png in loss.png max_vio.png expert_load_straight.png summary.md; do
  if [ -s "$WORK/plots/$png" ]; then echo "  ok   plots/$png"; else echo "  FAIL plots/$png missing"; failures=$((failures + 1)); fi
done
run "generate from the checkpoint" "$dsv3" generate --model "$WORK/straight" --prompt "The model" -n 8 --seed 1
run "logits of the checkpoint" "$dsv3" logits --model "$WORK/straight" --tokens "0,5,9,12" --out "$WORK/l.npy"
run "info on the checkpoint" "$dsv3" info --model "$WORK/straight"
run "perplexity of the checkpoint" "$dsv3" perplexity --model "$WORK/straight" --data "$WORK/shards" --seq-len 32 --quiet
run "quantize the checkpoint to FP8" "$dsv3" quantize --model "$WORK/straight" --out "$WORK/fp8model" --fp8
run "perplexity with FP8 weights and activations" "$dsv3" perplexity --model "$WORK/fp8model" --data "$WORK/shards" \
  --seq-len 32 --precision fp8 --quiet
run "train in fp8" "${train[@]}" --steps 2 --precision fp8 --out "$WORK/fp8"

# Errors: exit 1 with the reason on stderr.
expect_error "an --out holding a run is refused" "--resume" "${train[@]}" --steps 8 --out "$WORK/straight"
expect_error "missing shards are named" "manifest.json" "$dsv3" train --config "$WORK/config.json" \
  --data "$WORK/nothing" --steps 2 --out "$WORK/x"
expect_error "resume needs a checkpoint" "not a checkpoint written by dsv3 train" "$dsv3" train --resume "$WORK/shards"

echo "train_smoke: $failures failure(s)"
exit $((failures > 0))
