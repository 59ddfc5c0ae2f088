#!/usr/bin/env bash
# `dsv3 perplexity` against the independent float64 NumPy reference (tests/reference/perplexity_reference.py).
#
#   bash tests/cli/perplexity_reference.sh BUILD_DIR SOURCE_DIR    (ctest runs it as cli.perplexity_reference)
#
# Token shards from `dsv3 train-tokenizer` + `dsv3 data` on the project's README (a 300-id byte-level BPE,
# a fifth of the paragraphs held out as val), a random v3_mtp checkpoint from `dsv3 init` (vocabulary
# 1000 >= 300). `dsv3 perplexity --precision f32` twice: 4 windows of 40 tokens (chunks of 32 or more
# run the prefill attention) and every window of 12 tokens (the absorbed form). The reference reads the
# shards itself, scores the same windows and requires the printed cross-entropy within
# 2 * 1e-4 + 5e-7 (twice the logits' f32 bound, plus the printed rounding) and the printed perplexity
# to be e^cross-entropy.
#
# Needs a Python 3 with numpy; without one it fails, naming it.
set -u
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"

BUILD_DIR=${1:?usage: perplexity_reference.sh BUILD_DIR SOURCE_DIR}
SOURCE_DIR=${2:?usage: perplexity_reference.sh BUILD_DIR SOURCE_DIR}
REF="$SOURCE_DIR/tests/reference"
DSV3="$BUILD_DIR/dsv3"

find_numpy_python perplexity_reference
require_dsv3 "$DSV3"
make_work_dir perplexity_reference
failures=0
RUN_ELAPSED=1
RUN_COUNT_FAILURES=1

run "train-tokenizer (300 ids)" "$DSV3" train-tokenizer --input "$SOURCE_DIR/README.md" --vocab-size 300 \
  --out "$WORK/tokenizer.json" --quiet
run "data (val: a fifth of the paragraphs)" "$DSV3" data --tokenizer "$WORK/tokenizer.json" \
  --input "$SOURCE_DIR/README.md" --doc-separator $'\n\n' --val-fraction 0.2 --out "$WORK/shards" --quiet
run "init v3_mtp" "$DSV3" init --config "$REF/configs/v3_mtp.json" --out "$WORK/model" --seed 5 --no-tokenizer

# seq-len, windows (0: all of the split)
for setting in "40 4" "12 0"; do
  read -r seq_len windows <<<"$setting"
  window_flags=()
  if [ "$windows" != 0 ]; then window_flags=(--windows "$windows"); fi
  label="seq-len $seq_len, ${window_flags[*]:-every window}"
  if run "dsv3 perplexity ($label)" "$DSV3" perplexity --model "$WORK/model" --data "$WORK/shards" \
    --seq-len "$seq_len" "${window_flags[@]}" --precision f32 --quiet; then
    cp "$WORK/log.txt" "$WORK/dsv3.out"
    # RUN_PRINT_LOG: the comparison report, worth seeing when it passes too
    RUN_PRINT_LOG=1 run "perplexity_reference ($label)" "$PY" "$REF/perplexity_reference.py" --model "$WORK/model" \
      --data "$WORK/shards" --seq-len "$seq_len" --windows "$windows" --dsv3-output "$WORK/dsv3.out"
  fi
done

echo "perplexity_reference: $failures failure(s)"
exit $((failures > 0))
