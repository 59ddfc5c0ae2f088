#!/usr/bin/env bash
# `dsv3 quantize --fp8` against an independent NumPy implementation of DeepSeek's FP8 rule
# (tests/reference/quantize_reference.py: per 128x128 block s = max(amax, 1e-4)/448, or 2^ceil(log2 s)
# for ue8m0; code = e4m3(w / s), nearest, ties to even, saturating).
#
#   bash tests/cli/quantize_reference.sh BUILD_DIR SOURCE_DIR      (ctest runs it as cli.quantize_reference)
#
# Writes a small V3 checkpoint with partial edge blocks and an MTP layer (tests/reference/configs/
# v3_fp8_edges.json) with `dsv3 init`, BF16 and sharded, plus an F32 one; plants hard blocks in two weights
# (amax exactly 448 so w/s = w and BF16 values hit exact E4M3 ties, a block below the 1e-4 floor, an
# all-zero block with negative zeros, an outlier that pushes a block into E4M3's subnormals); quantizes
# with both scale formats (and with --shard-mb repacking) and requires every code and scale bit-identical
# to the reference, every other tensor byte-identical, and DeepSeek's quantization_config in config.json.
# Then checks that the CLI refuses an FP8 input and a non-empty --out.
#
# Needs a Python 3 with numpy (/usr/bin/python3 or python3 on PATH); without one it prints SKIP and exits 77.
set -u
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"

BUILD_DIR=${1:?usage: quantize_reference.sh BUILD_DIR SOURCE_DIR}
SOURCE_DIR=${2:?usage: quantize_reference.sh BUILD_DIR SOURCE_DIR}
REF="$SOURCE_DIR/tests/reference"
DSV3="$BUILD_DIR/dsv3"
CONFIG="$REF/configs/v3_fp8_edges.json"
SEED=5

find_numpy_python quantize_reference
require_dsv3 "$DSV3"
make_work_dir quantize_reference

failures=0
# run (lib/common.sh) prints each step's log when it succeeds (the reference's report), leaving out lines
# that start with "quantize ", and counts each failed step in $failures.
RUN_PRINT_LOG=1
RUN_LOG_DROP='^quantize '
RUN_COUNT_FAILURES=1

# refuse LABEL EXPECTED_TEXT COMMAND...: the command must fail and say EXPECTED_TEXT.
refuse() {
  local label=$1 expected=$2
  shift 2
  local log="$WORK/log.txt"
  if "$@" >"$log" 2>&1; then
    echo "  FAIL step '$label': succeeded but should have refused: $*"
    failures=$((failures + 1))
  elif ! grep -q -- "$expected" "$log"; then
    echo "  FAIL step '$label': refused without saying '$expected':"
    sed 's/^/       | /' "$log"
    failures=$((failures + 1))
  else
    echo "  ok   $label: $(grep -- "$expected" "$log" | head -n 1)"
  fi
}

echo "== NumPy E4M3 encoder"
run "self-test" "$PY" "$REF/quantize_reference.py" self-test

for dtype in bf16 f32; do
  in="$WORK/$dtype"
  flags=()
  [ "$dtype" = bf16 ] && flags=(--shard-mb 1)
  echo "== $dtype checkpoint ($(basename "$CONFIG")${flags[*]:+, ${flags[*]}})"
  run "$dtype: dsv3 init" "$DSV3" init --config "$CONFIG" --out "$in" --seed "$SEED" --dtype "$dtype" --no-tokenizer \
    "${flags[@]}" || continue
  run "$dtype: plant hard blocks" "$PY" "$REF/quantize_reference.py" perturb "$in" || continue
  for fmt in float ue8m0; do
    out="$in.$fmt"
    repack=()
    [ "$dtype" = bf16 ] && [ "$fmt" = ue8m0 ] && repack=(--shard-mb 2)
    run "$dtype/$fmt: dsv3 quantize --fp8 --scale-fmt $fmt${repack[*]:+ ${repack[*]}}" \
      "$DSV3" quantize --model "$in" --out "$out" --fp8 --scale-fmt "$fmt" "${repack[@]}" &&
      run "$dtype/$fmt: compare with the NumPy rule" "$PY" "$REF/quantize_reference.py" check "$in" "$out" \
        --scale-fmt "$fmt"
  done
done

echo "== refusals"
refuse "FP8 input" "already FP8" "$DSV3" quantize --model "$WORK/bf16.float" --out "$WORK/again" --fp8
refuse "non-empty --out" "not empty" "$DSV3" quantize --model "$WORK/bf16" --out "$WORK/bf16.float" --fp8
refuse "--fp8 missing" "--fp8 is required" "$DSV3" quantize --model "$WORK/bf16" --out "$WORK/nofmt"

if [ $failures -ne 0 ]; then
  echo "quantize_reference: $failures step(s) FAILED"
  exit 1
fi
echo "quantize_reference: all cases PASS (codes and scales bit-identical with the NumPy rule)"
