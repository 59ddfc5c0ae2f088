#!/usr/bin/env bash
# `dsv3 grads` against finite differences of the independent float64 NumPy reference forward
# (tests/reference/grad_check.py, deepseek_reference.py).
#
#   bash tests/cli/grads_reference.sh BUILD_DIR SOURCE_DIR        (ctest runs it as cli.grads_reference)
#
# For each small config in tests/reference/configs (V3 with MTP, sharded; V3 FP8 with partial 128x128
# blocks and MTP; V2-Lite style; V2 group_limited_greedy) it writes a random checkpoint with `dsv3 init`,
# runs `dsv3 grads` on a token list in float32 (the training arithmetic) and float64 — with the MTP loss,
# --mtp-lambda 0.3, for the configs that have an MTP layer — and checks both files against the same
# central differences of the reference's objective (main cross-entropy + lambda/D * sum_k MTP
# cross-entropy): every element of tensors with at most 64 elements, the 2 largest and 6 random elements
# of each larger one, at the tolerances tests/reference/grad_check.py derives (float32: 10 sqrt(n_eff)
# 2^-24 ~ 5e-5 relative; float64: the float32 storage and RoPE tables, ~6e-7; finite differences 2.7e-9).
#
# Needs a Python 3 with numpy (/usr/bin/python3 or python3 on PATH); without one it fails, naming it.
set -u
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"

BUILD_DIR=${1:?usage: grads_reference.sh BUILD_DIR SOURCE_DIR}
SOURCE_DIR=${2:?usage: grads_reference.sh BUILD_DIR SOURCE_DIR}
REF="$SOURCE_DIR/tests/reference"
DSV3="$BUILD_DIR/dsv3"
TOKENS="1,7,42,999,3,500,17,256,2"
SEED=11

find_numpy_python grads_reference
require_dsv3 "$DSV3"
make_work_dir grads_reference

failures=0
RUN_ELAPSED=1  # run (lib/common.sh) adds each step's elapsed seconds to its ok line

# case name, config file, extra init flags, MTP loss weight
CASES=(
  "v3_mtp|v3_mtp.json|--shard-mb 1|0.3"
  "v3_fp8_edges|v3_fp8_edges.json|--fp8|0.3"
  "v2_lite|v2_lite.json||0"
  "v2_group_limited|v2_group_limited.json|--dtype f32|0"
)

for entry in "${CASES[@]}"; do
  IFS='|' read -r name config flags mtp_lambda <<<"$entry"
  dir="$WORK/$name"
  init_config_case "$name" "$config" "$flags" || continue
  grads=()
  for precision in f32 f64; do
    if ! run "$name: dsv3 grads --precision $precision --mtp-lambda $mtp_lambda" "$DSV3" grads --model "$dir" \
      --tokens "$TOKENS" --precision "$precision" --mtp-lambda "$mtp_lambda" --out "$dir.$precision.safetensors"; then
      failures=$((failures + 1))
      continue 2
    fi
    grads+=(--grads "$dir.$precision.safetensors")
  done
  # RUN_PRINT_LOG: the check's report, worth seeing when it passes too
  if ! RUN_PRINT_LOG=1 run "$name: grad_check" "$PY" "$REF/grad_check.py" --model "$dir" --tokens "$TOKENS" "${grads[@]}"; then
    failures=$((failures + 1))
  fi
  rm -rf "$dir" "$dir".*.safetensors
done

if [ $failures -ne 0 ]; then
  echo "grads_reference: $failures step group(s) FAILED"
  exit 1
fi
echo "grads_reference: all cases PASS"
