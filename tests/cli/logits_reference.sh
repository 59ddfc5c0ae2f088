#!/usr/bin/env bash
# `dsv3 logits` against the independent float64 NumPy reference (tests/reference, docs/REFERENCE.md).
#
#   bash tests/cli/logits_reference.sh BUILD_DIR SOURCE_DIR        (ctest runs it as cli.logits_reference)
#
# For each small config in tests/reference/configs (V3 with an MTP layer, sharded; V3 FP8 with partial
# 128x128 edge blocks; V2-Lite style; V2 group_limited_greedy) and for two checkpoint writers
# (`dsv3 init` and the independent tests/reference/make_checkpoint.py), it writes a random checkpoint,
# computes logits at every position with the reference and with `dsv3 logits` (both --attention absorbed
# and naive) and requires
#   max |diff| <= ATOL (1e-4, logits of order 1)  and  max |diff| / max |reference| <= RTOL (1e-4).
# For the configs with an MTP layer it compares MTP module 0's logits the same way (`--mtp`: row i is fed
# the final-normed hidden state at position i and token i+1, and predicts token i+2). make_checkpoint.py
# writes the MTP module's embedding and head copies with their own random values, so there the
# comparison also shows that both read the module's own copies.
# First it runs the reference's own --self-test.
#
# Needs a Python 3 with numpy: /usr/bin/python3 (Debian python3-numpy) or python3 on PATH; without
# one it fails, naming it. Nothing in the environment changes what it checks.
set -u
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"

BUILD_DIR=${1:?usage: logits_reference.sh BUILD_DIR SOURCE_DIR}
SOURCE_DIR=${2:?usage: logits_reference.sh BUILD_DIR SOURCE_DIR}
REF="$SOURCE_DIR/tests/reference"
DSV3="$BUILD_DIR/dsv3"
ATOL=1e-4
RTOL=1e-4
TOKENS="1,7,42,999,3,500,17,256,2,64,128,300,7,7,0,511"
SEED=7

find_numpy_python logits_reference
echo "python: $PY ($("$PY" -c 'import numpy, sys; print("numpy", numpy.__version__, "python", sys.version.split()[0])'))"

require_dsv3 "$DSV3"

make_work_dir logits_reference

failures=0
RUN_ELAPSED=1  # run (lib/common.sh) adds each step's elapsed seconds to its ok line

echo "== reference self-test"
if ! run "deepseek_reference.py --self-test" "$PY" "$REF/deepseek_reference.py" --self-test; then
  failures=$((failures + 1))
fi

# The test configs have 1000 ids; `dsv3 init` copies no tokenizer beside them.
INIT_TOKENIZER=(--no-tokenizer)

# case name, config file, extra writer flags (the same for dsv3 init and make_checkpoint.py), "mtp" when
# the config has an MTP layer
CASES=(
  "v3_mtp|v3_mtp.json|--shard-mb 1|mtp"
  "v3_fp8_edges|v3_fp8_edges.json|--fp8|mtp"
  "v2_lite|v2_lite.json||"
  "v2_group_limited|v2_group_limited.json|--dtype f32|"
)
ATTENTION=(absorbed naive)

for entry in "${CASES[@]}"; do
  IFS='|' read -r name config flags mtp <<<"$entry"
  for writer in dsv3-init make_checkpoint; do
    label="$name/$writer"
    dir="$WORK/$name.$writer"
    echo "== $label ($config${flags:+, $flags})"
    read -r -a flag_words <<<"$flags"
    if [ "$writer" = dsv3-init ]; then
      write=("$DSV3" init --config "$REF/configs/$config" --out "$dir" --seed "$SEED" "${INIT_TOKENIZER[@]}" "${flag_words[@]}")
    else
      write=("$PY" "$REF/make_checkpoint.py" --config "$REF/configs/$config" --out "$dir" --seed "$SEED" "${flag_words[@]}")
    fi
    ref_mtp=() dsv3_mtp=()
    if [ -n "$mtp" ]; then ref_mtp=(--mtp "$dir.ref.mtp.npy") dsv3_mtp=(--mtp "$dir.dsv3.mtp.npy"); fi
    if ! run "$label: write checkpoint" "${write[@]}" ||
      ! run "$label: reference logits" "$PY" "$REF/deepseek_reference.py" --model "$dir" --tokens "$TOKENS" \
        --out "$dir.ref.npy" "${ref_mtp[@]}"; then
      failures=$((failures + 1))
      rm -rf "$dir"
      continue
    fi
    for attention in "${ATTENTION[@]}"; do
      candidate=("$DSV3" logits --model "$dir" --tokens "$TOKENS" --attention "$attention" --out "$dir.dsv3.npy"
        "${dsv3_mtp[@]}")
      if ! run "$label: dsv3 logits --attention $attention" "${candidate[@]}"; then
        failures=$((failures + 1))
        continue
      fi
      outputs=("logits|$dir.ref.npy|$dir.dsv3.npy")
      if [ -n "$mtp" ]; then outputs+=("MTP logits|$dir.ref.mtp.npy|$dir.dsv3.mtp.npy"); fi
      for output in "${outputs[@]}"; do
        IFS='|' read -r what reference candidate_file <<<"$output"
        # RUN_PRINT_LOG: the comparison report, worth seeing when it passes too
        if ! RUN_PRINT_LOG=1 run "$label: compare $what, $attention (atol $ATOL, rtol $RTOL)" "$PY" \
          "$REF/compare_logits.py" "$reference" "$candidate_file" --atol "$ATOL" --rtol "$RTOL" \
          --label "$label/$attention/$what"; then
          failures=$((failures + 1))
        fi
      done
      rm -f "$dir".dsv3*.npy
    done
    rm -rf "$dir" "$dir".ref*.npy
  done
done

if [ $failures -ne 0 ]; then
  echo "logits_reference: $failures step group(s) FAILED"
  exit 1
fi
echo "logits_reference: all cases PASS"
