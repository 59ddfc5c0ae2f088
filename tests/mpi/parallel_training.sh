#!/usr/bin/env bash
# Training under mpirun: ZeRO-1 data parallelism (src/dist/zero1.h) and expert parallelism
# (src/dist/expert_parallel.h) against one process, on a small MoE model (8 routed experts, an MTP module
# with its own MoE layer) and AdamW in F32 and BF16 moments:
#   - DP2 and DP4 runs of 3 steps (4 micro-batches a step) write model.safetensors and
#     optimizer.safetensors byte-identical to one process's, and the same losses and gradient norms;
#   - so do DP2/EP2, DP4/EP4 and DP4/EP2 (experts split over 2 or 4 ranks, tokens dispatched to them),
#     and DP2/EP2 with FP8 GEMMs (the default is bf16);
#   - a DP2 run stopped at step 2 and resumed in one process, and a one-process run stopped at step 2 and
#     resumed under DP2, end byte-identical to the uninterrupted run;
#   - the AdamW moments rank 0 holds shrink as 1/D (within one 64K-element chunk);
#   - --trace writes both ranks' steps, compute and collectives (the experts' all-to-alls too) as one
#     Chrome trace;
#   - `dsv3 schedule` runs 1F1B, DualPipe and DualPipeV on 4 ranks (sleeps for computation, real messages):
#     every rank runs its forwards, and the measured bubble is printed;
#   - pipeline parallelism on a 4-layer copy of the model: PP2-1F1B, PP2-DualPipe, PP4-DualPipe,
#     PP2-DualPipeV and PP2 × DP2/EP2 write the same checkpoints and metrics as one process, and a
#     PP2-DualPipe checkpoint continues as DP2/EP2 to the same end;
#   - impossible layouts are refused, naming the flag.
# Ranks run with --oversubscribe and one thread each (bit equality needs the same thread count per process).
#   bash tests/mpi/parallel_training.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
# shellcheck source=../cli/lib/common.sh
source "$(dirname "$0")/../cli/lib/common.sh"
BUILD_DIR=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
dsv3=$BUILD_DIR/dsv3
require_dsv3 "$dsv3"
command -v mpirun >/dev/null || { echo "FAIL: mpirun is missing (scripts/setup.sh installs openmpi-bin)"; exit 1; }
make_work_dir parallel_training
failures=0
RUN_COUNT_FAILURES=1
# OpenMPI refuses to start as root unless told (CI containers run as root).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
mpi=(mpirun --oversubscribe -np)

small_training_data || exit 1  # lib/common.sh: $WORK/config.json and $WORK/shards

base_args=(train --config "$WORK/config.json" --data "$WORK/shards" --batch-size 2 --seq-len 32
           --eval-every 0 --eval-sequences 4 --threads 1 --quiet)
train_args=("${base_args[@]}" --grad-accum 4)

# same NAME A B: the checkpoints A and B hold byte-identical weights and optimizer state, and their
# metrics the same losses and gradient norms.
same() {
  local name=$1 a=$2 b=$3 f ok=1
  for f in model.safetensors optimizer.safetensors; do
    if ! cmp -s "$a/$f" "$b/$f"; then
      echo "  FAIL $name: $f differs ($(cmp "$a/$f" "$b/$f" 2>&1 | head -1))"
      ok=0
    fi
  done
  if ! diff <(grep -o '"\(loss\|main_loss\|grad_norm\|step\)":[^,}]*' "$a/metrics.jsonl") \
            <(grep -o '"\(loss\|main_loss\|grad_norm\|step\)":[^,}]*' "$b/metrics.jsonl") >"$WORK/diff"; then
    echo "  FAIL $name: the metrics differ:"
    head -5 "$WORK/diff" | sed 's/^/       | /'
    ok=0
  fi
  if ((ok)); then
    echo "  ok   $name: weights, optimizer state and metrics identical"
  else
    failures=$((failures + 1))
  fi
}

for moments in f32 bf16; do
  echo "== AdamW moments $moments"
  run "one process, 3 steps" "$dsv3" "${train_args[@]}" --adam-moments "$moments" --steps 3 --out "$WORK/one_$moments"
  for np in 2 4; do
    run "mpirun -np $np, 3 steps" "${mpi[@]}" "$np" "$dsv3" "${train_args[@]}" --adam-moments "$moments" --steps 3 \
      --out "$WORK/dp${np}_$moments" &&
      same "DP$np equals one process" "$WORK/one_$moments" "$WORK/dp${np}_$moments"
    # The moments rank 0 holds: 1/np of the whole, give or take one chunk (64K elements × 2 moments).
    line=$(grep -o 'AdamW moments on rank 0: [0-9.]* MiB of [0-9.]* MiB' "$WORK/log.txt")
    if [[ $line =~ ([0-9.]+)\ MiB\ of\ ([0-9.]+)\ MiB ]] &&
        awk -v held="${BASH_REMATCH[1]}" -v all="${BASH_REMATCH[2]}" -v n="$np" -v m="$moments" 'BEGIN {
          chunk = 65536 * 2 * (m == "bf16" ? 2 : 4) / 1048576
          exit !(held <= all / n + chunk && held >= all / n - chunk) }'; then
      echo "  ok   ZeRO-1 memory: $line (1/$np)"
    else
      echo "  FAIL ZeRO-1 memory: expected rank 0 to hold 1/$np of the moments, got '$line'"
      failures=$((failures + 1))
    fi
  done
done

echo "== expert parallelism"
for layout in "2 2" "4 4" "4 2"; do
  read -r np ep <<<"$layout"
  run "mpirun -np $np --ep $ep, 3 steps" "${mpi[@]}" "$np" "$dsv3" "${train_args[@]}" --ep "$ep" --steps 3 \
    --out "$WORK/dp${np}_ep$ep" &&
    same "DP$np/EP$ep equals one process" "$WORK/one_f32" "$WORK/dp${np}_ep$ep"
done
run "one process, FP8 GEMMs" "$dsv3" "${train_args[@]}" --precision fp8 --steps 3 --out "$WORK/one_fp8"
run "mpirun -np 2 --ep 2, FP8 GEMMs" "${mpi[@]}" 2 "$dsv3" "${train_args[@]}" --ep 2 --precision fp8 --steps 3 \
  --out "$WORK/dp2_ep2_fp8" &&
  same "DP2/EP2 with FP8 GEMMs equals one process" "$WORK/one_fp8" "$WORK/dp2_ep2_fp8"

echo "== pipeline parallelism (a 4-layer copy of the model)"
sed 's/"num_hidden_layers": 2/"num_hidden_layers": 4/' "$WORK/config.json" >"$WORK/config4.json"
grep -q '"num_hidden_layers": 4' "$WORK/config4.json" || { echo "  FAIL the 4-layer config"; failures=$((failures + 1)); }
pp_args=(train --config "$WORK/config4.json" --data "$WORK/shards" --batch-size 2 --seq-len 32 --eval-every 0
         --eval-sequences 4 --threads 1 --quiet --steps 3)
run "one process, 4 micro-batches" "$dsv3" "${pp_args[@]}" --grad-accum 4 --out "$WORK/pp_one4"
run "one process, 8 micro-batches" "$dsv3" "${pp_args[@]}" --grad-accum 8 --out "$WORK/pp_one8"
# pipeline NAME NP ACCUM ARGS...: mpirun -np NP with ARGS equals one process with ACCUM micro-batches.
pipeline() {
  local name=$1 np=$2 accum=$3
  shift 3
  run "$name" timeout 300 "${mpi[@]}" "$np" "$dsv3" "${pp_args[@]}" --grad-accum "$accum" "$@" --out "$WORK/$name" &&
    same "$name equals one process" "$WORK/pp_one$accum" "$WORK/$name"
}
pipeline PP2-1F1B 2 4 --pp 2
pipeline PP2-DualPipe 2 4 --pp 2 --pp-schedule dualpipe
pipeline PP4-DualPipe 4 8 --pp 4 --pp-schedule dualpipe
pipeline PP2-DualPipeV 2 4 --pp 2 --pp-schedule dualpipev
pipeline PP2xDP2-EP2 4 4 --pp 2 --ep 2
run "PP2-DualPipe stopped at step 2" "${mpi[@]}" 2 "$dsv3" "${pp_args[@]}" --grad-accum 4 --pp 2 \
  --pp-schedule dualpipe --stop-at 2 --out "$WORK/pp_then_ep"
run "resumed as DP2/EP2" "${mpi[@]}" 2 "$dsv3" train --resume "$WORK/pp_then_ep" --threads 1 --quiet --ep 2 &&
  same "PP2-DualPipe to step 2, then DP2/EP2" "$WORK/pp_one4" "$WORK/pp_then_ep"

echo "== --trace"
run "mpirun -np 2 --ep 2 --trace" "${mpi[@]}" 2 "$dsv3" "${train_args[@]}" --ep 2 --steps 2 --out "$WORK/traced" \
  --trace "$WORK/trace.json" &&
  RUN_PRINT_LOG=1 run "the timeline has both ranks' steps, compute and collectives" python3 - "$WORK/trace.json" <<'PY'
import json, sys
events = json.load(open(sys.argv[1]))["traceEvents"]
names = {e["pid"]: e["args"]["name"] for e in events if e["ph"] == "M"}
assert names == {0: "rank 0", 1: "rank 1"}, names
for rank in (0, 1):
    spans = [e for e in events if e["ph"] == "X" and e["pid"] == rank]
    kinds = {e["name"].split(",")[0] for e in spans}
    for needed in ("step 1", "step 2", "forward+backward", "expert all-to-all", "reduce-scatter gradients",
                   "all-gather weights", "adamw (shard)"):
        assert needed in kinds, (rank, needed, sorted(kinds))
    assert sum(e["name"].startswith("forward+backward") for e in spans) == 4, "2 steps x 2 micro-batches per rank"
    assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in spans)
print(f"{len(events)} events, ranks {sorted(names.values())}")
PY

echo "== pipeline schedules on 4 ranks, sleeps for computation (dsv3 schedule)"
for schedule in 1f1b dualpipe dualpipev; do
  run "$schedule, 8 micro-batches" timeout 120 "${mpi[@]}" 4 "$dsv3" schedule --pp-schedule "$schedule" --micro-batches 8 \
    --forward-ms 4 --backward-ms 8 --weight-ms 4 --trace "$WORK/$schedule.json" &&
    cp "$WORK/log.txt" "$WORK/$schedule.out" &&
    RUN_PRINT_LOG=1 run "$schedule: every rank ran its forwards, the bubble measured" python3 - "$WORK/$schedule.json" \
      "$schedule" "$WORK/$schedule.out" <<'PY'
import json, sys
events = [e for e in json.load(open(sys.argv[1]))["traceEvents"] if e["ph"] == "X"]
per_rank = {"1f1b": 8, "dualpipe": 8, "dualpipev": 16}[sys.argv[2]]  # forward chunks a rank runs
for rank in range(4):
    forwards = sum(e["name"].count("F") for e in events if e["pid"] == rank)
    assert forwards == per_rank, (rank, forwards, per_rank)
print(open(sys.argv[3]).read().strip().splitlines()[1])
PY
done

echo "== checkpoints move between layouts"
run "mpirun -np 2, stopped at step 2" "${mpi[@]}" 2 "$dsv3" "${train_args[@]}" --steps 3 --stop-at 2 --out "$WORK/dp_then_one"
run "resumed in one process" "$dsv3" train --resume "$WORK/dp_then_one" --threads 1 --quiet &&
  same "DP2 to step 2, then one process" "$WORK/one_f32" "$WORK/dp_then_one"
run "one process, stopped at step 2" "$dsv3" "${train_args[@]}" --steps 3 --stop-at 2 --out "$WORK/one_then_dp"
run "resumed under mpirun -np 2" "${mpi[@]}" 2 "$dsv3" train --resume "$WORK/one_then_dp" --threads 1 --quiet &&
  same "one process to step 2, then DP2" "$WORK/one_f32" "$WORK/one_then_dp"

echo "== layouts refused"
# expect_mpi_error LABEL PATTERN NP ARGS...: the launch (with --grad-accum 4 unless ARGS give one) fails
# and some rank's stderr names PATTERN.
expect_mpi_error() {
  local label=$1 pattern=$2 np=$3
  shift 3
  local args=("$@")
  [[ " $* " == *" --grad-accum "* ]] || args+=(--grad-accum 4)
  "${mpi[@]}" "$np" "$dsv3" "${base_args[@]}" --steps 1 --out "$WORK/refused" "${args[@]}" >"$WORK/out" 2>"$WORK/err"
  local rc=$?
  if ((rc != 0)) && grep -q -- "$pattern" "$WORK/err"; then
    echo "  ok   $label: $(grep -m1 -o -- "$pattern.*" "$WORK/err" | head -c 140)"
  else
    echo "  FAIL $label (exit $rc, expected '$pattern' on stderr; got: $(head -c 300 "$WORK/err"))"
    failures=$((failures + 1))
  fi
}
expect_mpi_error "--pp not dividing the ranks" "--pp 3 does not divide" 2 --pp 3
expect_mpi_error "--ep not dividing the data-parallel ranks" "--ep 3 must divide" 2 --ep 3
expect_mpi_error "--grad-accum not a multiple of D" "--grad-accum 3 must be a multiple" 2 --grad-accum 3
expect_mpi_error "DualPipe with an odd --pp" "DualPipe needs an even --pp" 3 --pp 3 --pp-schedule dualpipe \
  --micro-batches 6 --grad-accum 6
expect_mpi_error "--micro-batches disagreeing with --grad-accum" "--micro-batches 8 disagrees with --grad-accum 4" 2 \
  --pp 2 --micro-batches 8

echo "parallel_training: $failures failure(s)"
exit $((failures > 0))
