#include "dist/pipeline_run.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <thread>

#include "core/error.h"

namespace dsv3 {

double PipelineRun::bubble_ms() const {
  double idle = 0;
  for (double b : busy_ms) idle = std::max(idle, makespan_ms - b);
  return idle;
}

PipelineRun run_pipeline_with_sleeps(const Comm& comm, const ScheduleOps& sched, const PipelineDurations& ms) {
  using Kind = PipelineOp::Kind;
  const int64_t P = sched.ranks, r = comm.rank();
  DSV3_CHECK(comm.size() == P, "[schedule] the schedule has ", P, " ranks; the launch has ", comm.size(),
             " (mpirun -np ", P, ")");
  const PipelineSchedule kind = sched.kind;
  const int64_t stages = pipeline_stages(kind, P);
  const int64_t per_pipe = kind == PipelineSchedule::dualpipe ? sched.micro_batches / 2 : sched.micro_batches;
  // A message's tag names its edge: pipe, the sending stage, micro-batch, direction.
  const auto tag = [&](int pipe, int64_t from_stage, int64_t mb, bool backward) {
    const int64_t t = ((int64_t(pipe) * stages + from_stage) * per_pipe + mb) * 2 + (backward ? 1 : 0);
    DSV3_CHECK(t < 32767, "[schedule] too many stages × micro-batches for MPI's guaranteed tag range");
    return int(t);
  };
  std::vector<int64_t> next_f(2, 0), next_b(2, 0);
  std::deque<int> deferred;
  TraceRecorder trace;
  trace.enabled = true;
  double busy = 0, payload = 0;
  comm.barrier();
  trace.restart();
  const auto sleep_ms = [&](double t) {
    std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(t));
  };
  // Receive what a forward / backward of `phase` needs, from another rank (same-rank stages need nothing).
  const auto receive = [&](int phase, bool backward) {
    const PipelineSlot at = pipeline_slot(kind, P, r, phase);
    const int64_t mb = backward ? next_b[size_t(phase)] : next_f[size_t(phase)];
    const int64_t from = backward ? at.stage + 1 : at.stage - 1;
    if (from < 0 || from >= stages) return;
    const int64_t peer = pipeline_rank_of(kind, P, at.pipe, from);
    if (peer != r) comm.recv(&payload, 1, int(peer), tag(at.pipe, from, mb, backward));
  };
  const auto send_on = [&](int phase, bool backward) {
    const PipelineSlot at = pipeline_slot(kind, P, r, phase);
    const int64_t mb = backward ? next_b[size_t(phase)]++ : next_f[size_t(phase)]++;
    const int64_t to = backward ? at.stage - 1 : at.stage + 1;
    if (to < 0 || to >= stages) return;
    const int64_t peer = pipeline_rank_of(kind, P, at.pipe, to);
    if (peer != r) comm.send(&payload, 1, int(peer), tag(at.pipe, at.stage, mb, backward));
  };
  for (const PipelineOp& op : sched.ops[size_t(r)]) {
    switch (op.kind) {
      case Kind::forward: {
        receive(op.phase, false);
        auto span = trace.span(cat("F", op.phase, " mb ", next_f[size_t(op.phase)]), "forward");
        sleep_ms(ms.forward);
        busy += ms.forward;
        send_on(op.phase, false);
        break;
      }
      case Kind::backward: {
        receive(op.phase, true);
        const double t = op.zero_bubble ? ms.backward - ms.weight : ms.backward;
        auto span = trace.span(cat("B", op.phase, op.zero_bubble ? " (input) mb " : " mb ", next_b[size_t(op.phase)]),
                               "backward");
        sleep_ms(t);
        busy += t;
        if (op.zero_bubble) deferred.push_back(op.phase);
        send_on(op.phase, true);
        break;
      }
      case Kind::weight: {
        DSV3_CHECK(!deferred.empty(), "[schedule] rank ", r, " runs a W with no deferred weight gradient");
        auto span = trace.span(cat("W", deferred.front()), "weight");
        deferred.pop_front();
        sleep_ms(ms.weight);
        busy += ms.weight;
        break;
      }
      case Kind::forward_backward: {
        receive(op.phase, false);
        receive(op.backward_phase, true);
        auto span = trace.span(cat("F", op.phase, " mb ", next_f[size_t(op.phase)], " + B", op.backward_phase, " mb ",
                                   next_b[size_t(op.backward_phase)]),
                               "forward+backward");
        sleep_ms(ms.forward + ms.backward);
        busy += ms.forward + ms.backward;
        send_on(op.phase, false);
        send_on(op.backward_phase, true);
        break;
      }
    }
  }
  const double end_ms = trace.now_us() / 1e3;
  // Rank 0 collects each rank's end, busy time and spans.
  const double mine[2] = {end_ms, busy};
  std::vector<double> all(size_t(2 * P));
  comm.allgather(mine, 2, all.data());
  PipelineRun run;
  for (int64_t q = 0; q < P; ++q) {
    run.makespan_ms = std::max(run.makespan_ms, all[size_t(2 * q)]);
    run.busy_ms.push_back(all[size_t(2 * q + 1)]);
  }
  run.timeline = gather_trace_events(comm, trace.events());
  return run;
}

}  // namespace dsv3
