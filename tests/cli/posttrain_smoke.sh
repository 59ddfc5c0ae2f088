#!/usr/bin/env bash
# Post-training from the CLI (src/rl): `dsv3 tasks` writes the requested number of problems per task and
# split as JSON lines with a user message, an answer and a worked solution (--with-solutions adds it as
# the assistant message); the train and test files share no prompt; impossible settings fail naming the
# flag.
#   bash tests/cli/posttrain_smoke.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"
BUILD_DIR=$(cd "$1" && pwd)
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

echo "posttrain_smoke: $failures failure(s)"
exit $((failures > 0))
