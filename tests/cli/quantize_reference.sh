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

BUILD_DIR=${1:?usage: quantize_reference.sh BUILD_DIR SOURCE_DIR}
SOURCE_DIR=${2:?usage: quantize_reference.sh BUILD_DIR SOURCE_DIR}
REF="$SOURCE_DIR/tests/reference"
DSV3="$BUILD_DIR/dsv3"
CONFIG="$REF/configs/v3_fp8_edges.json"
SEED=5

PY=""
for candidate in /usr/bin/python3 python3; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import numpy' >/dev/null 2>&1; then
    PY=$candidate
    break
  fi
done
if [ -z "$PY" ]; then
  echo "SKIP: quantize_reference needs a Python 3 with numpy (tried /usr/bin/python3, python3);"
  echo "      install it with: apt-get install python3-numpy"
  exit 77
fi
if [ ! -x "$DSV3" ]; then
  echo "FAIL step 'find dsv3': $DSV3 does not exist or is not executable (build the 'dsv3' target first)"
  exit 1
fi

WORK=$(mktemp -d "$BUILD_DIR/quantize_reference.XXXXXX") || { echo "FAIL step 'mktemp' under $BUILD_DIR"; exit 1; }
trap 'rm -rf "$WORK"' EXIT

failures=0
# run LABEL COMMAND...: runs the command with its output in a log; prints the log when it succeeds (the
# reference's report), or which step failed and the end of the log.
run() {
  local label=$1
  shift
  local log="$WORK/log.txt"
  "$@" >"$log" 2>&1
  local rc=$?
  if [ $rc -eq 0 ]; then
    echo "  ok   $label"
    grep -v '^quantize ' "$log" | sed 's/^/       | /'
    return 0
  fi
  echo "  FAIL step '$label' (exit $rc): $*"
  tail -n 25 "$log" | sed 's/^/       | /'
  failures=$((failures + 1))
  return 1
}

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
