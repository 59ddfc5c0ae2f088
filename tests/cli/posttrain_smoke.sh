#!/usr/bin/env bash
# Post-training from the CLI (src/rl):
#   - `dsv3 tasks` writes the requested number of problems per task and split as JSON lines with a user
#     message, an answer and a worked solution (--with-solutions adds it as the assistant message); the
#     train and test files share no prompt; impossible settings fail naming the flag;
#   - `dsv3 sft` fine-tunes a small pretrained model on those solutions: the loss counts only the reply
#     tokens (fewer than the batch holds), the validation loss falls; a run stopped at step 2 and resumed
#     ends with the same weights, bit for bit, as an uninterrupted one; `dsv3 train --resume` on it is
#     refused, naming dsv3 sft; the checkpoint generates;
#   - `dsv3 grpo` runs on it: a metrics line per step with rewards, KL, clip fraction, lengths, entropy,
#     throughputs and the sampler-vs-trainer log-probability gap (small), held-out accuracy where asked;
#     its checkpoint generates; a group of one completion is refused;
#   - `dsv3 distill` with a teacher that solves none of its problems stops with a message saying so.
#   bash tests/cli/posttrain_smoke.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"
BUILD_DIR=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
dsv3=$BUILD_DIR/dsv3
require_dsv3 "$dsv3"
make_work_dir posttrain_smoke
failures=0
RUN_COUNT_FAILURES=1

echo "== dsv3 tasks"
for task in arithmetic parity countdown; do
  run "$task: 300 train, 40 test problems" sh -c "'$dsv3' tasks --task $task --n 300 --with-solutions \
    --out '$WORK/$task-train.jsonl' && '$dsv3' tasks --task $task --split test --n 40 --out '$WORK/$task-test.jsonl'" &&
    RUN_PRINT_LOG=1 run "$task: lines well formed, splits disjoint" python3 - "$WORK/$task-train.jsonl" \
      "$WORK/$task-test.jsonl" "$task" <<'PY'
import json, sys
train = [json.loads(l) for l in open(sys.argv[1])]
test = [json.loads(l) for l in open(sys.argv[2])]
assert len(train) == 300 and len(test) == 40, (len(train), len(test))
for line in train + test:
    assert line["task"] == sys.argv[3] and line["answer"] and line["prompt"] == line["messages"][0]["content"]
    assert line["solution"].startswith("<think>\n") and line["solution"].endswith("</answer>")
assert all(l["messages"][1] == {"role": "assistant", "content": l["solution"]} for l in train)
assert all(len(l["messages"]) == 1 for l in test)
shared = {l["prompt"] for l in train} & {l["prompt"] for l in test}
assert not shared, shared
print(f"{len({l['prompt'] for l in train})} distinct train prompts, e.g. {train[0]['prompt'][:60]!r}")
PY
done
expect_error "a difficulty out of range names its flag" "--digits must be in" "$dsv3" tasks --task arithmetic --digits 0
expect_error "too small a problem space names its flag" "raise --bits" "$dsv3" tasks --task parity --bits 1 \
  --split test --n 3

echo "== dsv3 sft"
small_training_data || exit 1  # lib/common.sh: $WORK/config.json, $WORK/shards, $WORK/tok (with chat tokens)
run "pretrain a small model" "$dsv3" train --config "$WORK/config.json" --data "$WORK/shards" --batch-size 4 \
  --seq-len 64 --steps 4 --eval-sequences 4 --threads 2 --quiet --out "$WORK/base"
sft=("$dsv3" sft --model "$WORK/base" --data "$WORK/arithmetic-train.jsonl" --batch-size 2 --seq-len 256
     --eval-every 3 --eval-sequences 4 --lr 1e-3 --threads 2 --quiet)
run "sft, 6 steps" "${sft[@]}" --steps 6 --out "$WORK/sft" &&
  RUN_PRINT_LOG=1 run "sft: reply tokens only, validation loss falls" python3 - "$WORK/sft/metrics.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
header, steps = lines[0], [l for l in lines if "step" in l]
assert header["options"]["preset"].startswith("sft:"), header["options"]["preset"]
assert [s["step"] for s in steps] == list(range(1, 7))
per_step = 2 * 256  # batch × seq
counted = [b["tokens"] - a["tokens"] for a, b in zip([{"tokens": 0}] + steps, steps)]
assert all(per_step / 8 < c < per_step * 3 / 4 for c in counted), counted  # the replies, not the prompts
vals = [s["val_loss"] for s in steps if "val_loss" in s]
assert len(vals) == 2 and vals[1] < vals[0], vals
print(f"counted targets per step {counted}, val loss {vals[0]:.3f} -> {vals[1]:.3f}")
PY
run "sft stopped at step 2" "${sft[@]}" --steps 6 --stop-at 2 --out "$WORK/sft_split"
run "sft resumed" "$dsv3" sft --resume "$WORK/sft_split" --threads 2 --quiet &&
  run "resumed sft equals the uninterrupted run" cmp "$WORK/sft/model.safetensors" "$WORK/sft_split/model.safetensors"
expect_error "dsv3 train --resume on an sft run names dsv3 sft" "continue the run with dsv3 sft --resume" \
  "$dsv3" train --resume "$WORK/sft" --quiet
expect_error "sft needs --model" "--model DIR is required" "$dsv3" sft --data "$WORK/arithmetic-train.jsonl" \
  --steps 2 --out "$WORK/nomodel"
run "the fine-tuned model generates" "$dsv3" generate --model "$WORK/sft" --prompt "Compute 12 + 34." -n 8 --temp 0

echo "== dsv3 grpo"
run "grpo, 3 steps of 2 prompts x 4 completions" "$dsv3" grpo --model "$WORK/sft" --task arithmetic --digits 1 \
  --steps 3 --prompts-per-step 2 --num-generations 4 --max-completion-length 24 --eval-problems 6 --eval-every 2 \
  --beta 0.05 --out "$WORK/grpo" --quiet &&
  RUN_PRINT_LOG=1 run "grpo: metrics of every step, sampler and trainer agree" python3 - "$WORK/grpo/metrics.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert lines[0]["type"] == "grpo" and lines[0]["num_generations"] == 4, lines[0]
assert lines[1] == {"step": 0, "eval_accuracy": lines[1]["eval_accuracy"]}
steps = lines[2:]
assert [s["step"] for s in steps] == [1, 2, 3]
for s in steps:
    for key in ("reward", "accuracy", "format", "kl", "clip_fraction", "completion_length", "entropy",
                "equal_groups", "rollout_tokens_per_s", "train_tokens_per_s", "sampler_logp_gap"):
        assert key in s, (key, s)
    assert 0 <= s["reward"] <= 1 and 0 < s["completion_length"] <= 24 and s["rollout_tokens_per_s"] > 0
    assert s["sampler_logp_gap"] < 0.05, s["sampler_logp_gap"]  # bf16 GEMMs on both sides
assert "eval_accuracy" in steps[1] and "eval_accuracy" in steps[2]
print(f"reward {[round(s['reward'], 3) for s in steps]}, sampler-trainer log-prob gap "
      f"{max(s['sampler_logp_gap'] for s in steps):.4f}")
PY
run "the GRPO checkpoint generates" "$dsv3" generate --model "$WORK/grpo" --prompt "Compute 1 + 2." -n 4 --temp 0
expect_error "distill with a teacher that solves nothing says so" "answered none of the 8 problems correctly" \
  "$dsv3" distill --teacher "$WORK/base" --student "$WORK/base" --task countdown --problems 8 --samples 2 \
  --max-completion-length 16 --steps 2 --out "$WORK/distill" --quiet
expect_error "one completion per prompt is refused" "--num-generations must be >= 2" "$dsv3" grpo \
  --model "$WORK/sft" --task parity --num-generations 1 --out "$WORK/grpo_bad"

echo "posttrain_smoke: $failures failure(s)"
exit $((failures > 0))
