#!/usr/bin/env bash
# The training benchmark at its smallest (tiny preset, one timed step): it must print its validation line
# first — the timed step against its kernels' twins, within the bound — and only then its figures, with
# MFU against a measured peak of at most 1. (Figures are not checked: CI machines are shared and noisy;
# docs/BENCHMARKS.md holds measured ones.)
#   bash tests/cli/bench_smoke.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"
BUILD_DIR=$(cd "$1" && pwd)
make_work_dir bench_smoke
find_numpy_python bench_smoke
failures=0
RUN_COUNT_FAILURES=1
bench=$BUILD_DIR/bench/bench_train
require_dsv3 "$bench"
for precision in bf16 fp8; do
  if run "bench_train tiny 1 step, $precision" "$bench" tiny 1 0 "$precision"; then
    cp "$WORK/log.txt" "$WORK/bench.txt"
    RUN_PRINT_LOG=1 run "validation first, then figures ($precision)" "$PY" - "$WORK/bench.txt" <<'PYEOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
assert len(lines) == 2, f"expected a validation line and a figures line, got {len(lines)}"
v, f = lines
assert v.get("bench") == "train_step_validate" and v["ok"] is True, f"first line is not a passed validation: {v}"
assert v["grad_rel_diff"] <= v["bound"] and v["loss_rel_diff"] <= v["bound"], v
assert f.get("bench") == "train_step" and f["median_s"] > 0, f"second line is not the figures: {f}"
for key in ("mfu_f32", "mfu_bf16"):
    assert 0 <= f[key] <= 1, f"{key} {f[key]} is not a fraction of a measured peak"
print(f"validated (gradient {v['grad_rel_diff']:.3g} <= {v['bound']:.3g}), then {f['tokens_per_s']:.0f} tokens/s")
PYEOF
  fi
done
echo "bench_smoke: $failures failure(s)"
exit $((failures > 0))
