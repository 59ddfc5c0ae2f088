#!/usr/bin/env bash
# `dsv3 logits --precision bf16|fp8` (main and MTP logits) against the independent float64 NumPy
# reference, both exact and with dsv3's activation rounding emulated (tests/reference/check_precision.py
# has the checks and the derivation of their bounds; activation_rounding.py the rounding points).
#
#   bash tests/cli/precision_reference.sh BUILD_DIR SOURCE_DIR    (ctest runs it as cli.precision_reference)
#
# Checkpoints from `dsv3 init`: v3_mtp (BF16 weights, V3 router, MTP layer) and v3_fp8_edges (FP8
# weights whose 128x128 blocks and 1x128 activation tiles are partial at every edge, MTP layer). For
# each precision and attention form: six token lists of nine tokens (nine, so that BF16 projections take
# the matmul path where the CPU has a bf16 matmul and the MTP module sees eight rows), dsv3's logits, then
#   (a) a quarter of the rows (main and MTP each) agree with the emulating reference to 1e-5 relative,
#   (c) and on those rows the rounding moves the logits by >= 3e-4 (it is really exercised);
#   (b) the median row is within 3 eps of the exact reference (eps: the RMS error the formats' unit
#       roundoff gives after the roundings on the path; 3.7e-3 in bf16, 0.10 in fp8).
# The absorbed form (these lists have fewer than 32 tokens) multiplies by an f32 copy of kv_b_proj with
# unrounded inputs: the reference is told so (--kv-b-exact); the naive form rounds kv_b_proj's input.
#
# Needs a Python 3 with numpy; without one it fails, naming it.
set -u
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"

BUILD_DIR=${1:?usage: precision_reference.sh BUILD_DIR SOURCE_DIR}
SOURCE_DIR=${2:?usage: precision_reference.sh BUILD_DIR SOURCE_DIR}
REF="$SOURCE_DIR/tests/reference"
DSV3="$BUILD_DIR/dsv3"
SEED=7
TOKEN_LISTS=(
  "1,7,42,999,3,500,17,256,2"
  "64,128,300,7,7,0,511,12,900"
  "5,6,7,8,9,10,11,12,13"
  "999,998,3,3,3,250,1,77,640"
  "400,20,810,33,2,71,560,91,18"
  "15,730,222,4,68,349,901,13,87"
)

find_numpy_python precision_reference
require_dsv3 "$DSV3"
make_work_dir precision_reference

failures=0
RUN_ELAPSED=1

# case name, config, init flags, then "precision attention" pairs
CASES=(
  "v3_mtp|v3_mtp.json||bf16 absorbed,bf16 naive,fp8 absorbed"
  "v3_fp8_edges|v3_fp8_edges.json|--fp8|bf16 absorbed,fp8 absorbed,fp8 naive"
)

for entry in "${CASES[@]}"; do
  IFS='|' read -r name config flags runs <<<"$entry"
  dir="$WORK/$name"
  init_config_case "$name" "$config" "$flags" || continue
  IFS=',' read -r -a pairs <<<"$runs"
  for pair in "${pairs[@]}"; do
    read -r precision attention <<<"$pair"
    label="$name/$precision/$attention"
    checks=()
    ok=1
    for i in "${!TOKEN_LISTS[@]}"; do
      out="$WORK/$name.$precision.$attention.$i"
      if ! run "$label: dsv3 logits, list $i" "$DSV3" logits --model "$dir" --tokens "${TOKEN_LISTS[$i]}" \
        --precision "$precision" --attention "$attention" --out "$out.npy" --mtp "$out.mtp.npy"; then
        ok=0
        break
      fi
      checks+=(--tokens "${TOKEN_LISTS[$i]}" --dsv3 "$out.npy" --dsv3-mtp "$out.mtp.npy")
    done
    kv_b=()
    if [ "$attention" = absorbed ]; then kv_b=(--kv-b-exact); fi
    # RUN_PRINT_LOG: the checks' report is worth seeing when they pass too
    if [ $ok = 1 ] && RUN_PRINT_LOG=1 run "$label: check_precision" "$PY" "$REF/check_precision.py" --model "$dir" \
      --precision "$precision" "${kv_b[@]}" --label "$label" "${checks[@]}"; then
      :
    else
      failures=$((failures + 1))
    fi
  done
  rm -rf "$dir" "$WORK/$name".*
done

if [ $failures -ne 0 ]; then
  echo "precision_reference: $failures step group(s) FAILED"
  exit 1
fi
echo "precision_reference: all cases PASS"
