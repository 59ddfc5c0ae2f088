#!/usr/bin/env bash
# `dsv3 grads` against finite differences of the independent float64 NumPy reference forward
# (tests/reference/grad_check.py, deepseek_reference.py).
#
#   bash tests/cli/grads_reference.sh BUILD_DIR SOURCE_DIR        (ctest runs it as cli.grads_reference)
#
# For each small config in tests/reference/configs (V3 with MTP, sharded; V3 FP8 with partial 128x128
# blocks; V2-Lite style; V2 group_limited_greedy) it writes a random checkpoint with `dsv3 init`, runs
# `dsv3 grads` on a token list in float32 (the training arithmetic) and float64, and checks sampled
# elements of every gradient tensor against central differences of the reference's mean next-token
# cross-entropy:  |g - fd| <= RTOL·|fd| + ATOL·max|g of the tensor|.
# float32: RTOL 1e-3, ATOL 1e-4 (observed errors ~1e-6 relative: float32 sums of a few hundred terms);
# float64: RTOL 1e-5, ATOL 1e-7 (the finite differences' own truncation and rounding, step 1e-5).
#
# Needs a Python 3 with numpy (/usr/bin/python3 or python3 on PATH); without one it prints SKIP and
# exits 77.
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

# case name, config file, extra init flags
CASES=(
  "v3_mtp|v3_mtp.json|--shard-mb 1"
  "v3_fp8_edges|v3_fp8_edges.json|--fp8"
  "v2_lite|v2_lite.json|"
  "v2_group_limited|v2_group_limited.json|--dtype f32"
)

for entry in "${CASES[@]}"; do
  IFS='|' read -r name config flags <<<"$entry"
  dir="$WORK/$name"
  echo "== $name ($config${flags:+, $flags})"
  read -r -a flag_words <<<"$flags"
  if ! run "$name: dsv3 init" "$DSV3" init --config "$REF/configs/$config" --out "$dir" --seed "$SEED" \
    --no-tokenizer "${flag_words[@]}"; then
    failures=$((failures + 1))
    continue
  fi
  for precision in f32 f64; do
    if [ "$precision" = f32 ]; then tol=(--rtol 1e-3 --atol 1e-4); else tol=(--rtol 1e-5 --atol 1e-7); fi
    if run "$name: dsv3 grads --precision $precision" "$DSV3" grads --model "$dir" --tokens "$TOKENS" \
      --precision "$precision" --out "$dir.$precision.safetensors" &&
      run "$name: grad_check $precision (${tol[*]})" "$PY" "$REF/grad_check.py" --model "$dir" --tokens "$TOKENS" \
        --grads "$dir.$precision.safetensors" "${tol[@]}"; then
      sed 's/^/       | /' "$WORK/log.txt"
    else
      failures=$((failures + 1))
    fi
  done
  rm -rf "$dir" "$dir".*.safetensors
done

if [ $failures -ne 0 ]; then
  echo "grads_reference: $failures step group(s) FAILED"
  exit 1
fi
echo "grads_reference: all cases PASS"
