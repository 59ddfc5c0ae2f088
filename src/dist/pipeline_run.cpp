#include "dist/pipeline_run.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <thread>
#include <tuple>

#include "core/error.h"

namespace dsv3 {

double run_pipeline(const Comm& comm, const ScheduleOps& sched, PipelineWork& work, TraceRecorder& trace) {
  using Kind = PipelineOp::Kind;
  const int64_t P = sched.ranks, r = comm.rank();
  DSV3_CHECK(comm.size() == P, "[pipeline] the schedule has ", P, " ranks; the pipeline has ", comm.size());
  const PipelineSchedule kind = sched.kind;
  const int64_t stages = pipeline_stages(kind, P);
  const int64_t per_pipe = kind == PipelineSchedule::dualpipe ? sched.micro_batches / 2 : sched.micro_batches;
  // A message's tag names its edge: pipe, the sending stage, micro-batch, direction.
  const auto tag = [&](int pipe, int64_t from_stage, int64_t mb, bool backward) {
    const int64_t t = ((int64_t(pipe) * stages + from_stage) * per_pipe + mb) * 2 + (backward ? 1 : 0);
    DSV3_CHECK(t < 32767, "[pipeline] too many stages × micro-batches for MPI's guaranteed tag range");
    return int(t);
  };
  std::vector<int64_t> next_f(2, 0), next_b(2, 0);
  std::deque<std::pair<int, int64_t>> deferred;  // zero-bubble backwards' weight gradients, oldest first
  struct Sent {
    std::vector<char> data;
    int64_t request = 0;
  };
  std::deque<Sent> sent;  // in flight until the end of the step
  // Messages between two stages on this rank (DualPipeV's turn at the bottom of the V).
  std::map<std::tuple<int, int64_t, int64_t, bool>, std::vector<char>> local;
  double busy = 0;
  const auto timed = [&](auto&& fn) {
    const double start = trace.now_us();
    fn();
    busy += (trace.now_us() - start) / 1e3;
  };
  using Message = std::vector<char>;
  // The message a forward / backward of `phase` needs; empty at the pipe's end.
  const auto receive = [&](int phase, bool backward) {
    const PipelineSlot at = pipeline_slot(kind, P, r, phase);
    const int64_t mb = backward ? next_b[size_t(phase)] : next_f[size_t(phase)];
    const int64_t from = backward ? at.stage + 1 : at.stage - 1;
    Message in;
    if (from < 0 || from >= stages) return in;
    const int64_t peer = pipeline_rank_of(kind, P, at.pipe, from);
    if (peer == r) {
      auto it = local.find({at.pipe, from, mb, backward});
      DSV3_CHECK(it != local.end(), "[pipeline] rank ", r, " has no message from its own stage ", from);
      in = std::move(it->second);
      local.erase(it);
      return in;
    }
    in.resize(size_t(backward ? work.backward_bytes(phase) : work.forward_bytes(phase)));
    auto span = trace.span(cat(backward ? "receive gradient" : "receive activations", ", stage ", from), "communication");
    comm.recv_bytes(in.data(), int64_t(in.size()), int(peer), tag(at.pipe, from, mb, backward));
    return in;
  };
  const auto send_on = [&](int phase, bool backward, Message out) {
    const PipelineSlot at = pipeline_slot(kind, P, r, phase);
    const int64_t mb = backward ? next_b[size_t(phase)]++ : next_f[size_t(phase)]++;
    const int64_t to = backward ? at.stage - 1 : at.stage + 1;
    if (to < 0 || to >= stages) return;
    const int64_t peer = pipeline_rank_of(kind, P, at.pipe, to);
    if (peer == r) {
      local[{at.pipe, at.stage, mb, backward}] = std::move(out);
      return;
    }
    Sent& s = sent.emplace_back();
    s.data = std::move(out);
    s.request = comm.isend_bytes(s.data.data(), int64_t(s.data.size()), int(peer), tag(at.pipe, at.stage, mb, backward));
  };
  const auto forward = [&](int phase, const Message& in) {
    Message out(size_t(work.forward_bytes(phase)), 0);
    const int64_t mb = next_f[size_t(phase)];
    auto span = trace.span(cat("F", phase, " mb ", mb), "forward");
    timed([&] { work.forward(phase, mb, in.empty() ? nullptr : in.data(), out.data()); });
    return out;
  };
  const auto backward = [&](int phase, bool zero_bubble, const Message& in) {
    Message out(size_t(work.backward_bytes(phase)), 0);
    const int64_t mb = next_b[size_t(phase)];
    auto span = trace.span(cat("B", phase, zero_bubble ? " (input) mb " : " mb ", mb), "backward");
    timed([&] { work.backward(phase, mb, zero_bubble, in.empty() ? nullptr : in.data(), out.data()); });
    if (zero_bubble) deferred.emplace_back(phase, mb);
    return out;
  };
  for (const PipelineOp& op : sched.ops[size_t(r)]) {
    switch (op.kind) {
      case Kind::forward:
        send_on(op.phase, false, forward(op.phase, receive(op.phase, false)));
        break;
      case Kind::backward:
        send_on(op.phase, true, backward(op.phase, op.zero_bubble, receive(op.phase, true)));
        break;
      case Kind::weight: {
        DSV3_CHECK(!deferred.empty(), "[pipeline] rank ", r, " runs a W with no deferred weight gradient");
        const auto [phase, mb] = deferred.front();
        deferred.pop_front();
        auto span = trace.span(cat("W", phase, " mb ", mb), "weight");
        timed([&] { work.weight(phase, mb); });
        break;
      }
      case Kind::forward_backward: {
        // A pair is one unit, as the schedule charges it (F&B): both inputs first, both outputs after.
        // The two run one after the other; nothing overlaps them yet.
        const Message forward_in = receive(op.phase, false), backward_in = receive(op.backward_phase, true);
        Message forward_out = forward(op.phase, forward_in);
        Message backward_out = backward(op.backward_phase, false, backward_in);
        send_on(op.phase, false, std::move(forward_out));
        send_on(op.backward_phase, true, std::move(backward_out));
        break;
      }
    }
  }
  {
    auto span = trace.span("wait for sends", "communication");
    for (Sent& s : sent) Comm::wait(s.request);
  }
  DSV3_CHECK(local.empty() && deferred.empty(), "[pipeline] rank ", r, " ended its schedule with work left");
  return busy;
}

double PipelineRun::bubble_ms() const {
  double idle = 0;
  for (double b : busy_ms) idle = std::max(idle, makespan_ms - b);
  return idle;
}

namespace {

class SleepWork final : public PipelineWork {
 public:
  explicit SleepWork(const PipelineDurations& ms) : ms_(ms) {}
  int64_t forward_bytes(int) const override { return 8; }
  int64_t backward_bytes(int) const override { return 8; }
  void forward(int, int64_t, const void*, void*) override { sleep(ms_.forward); }
  void backward(int, int64_t, bool zero_bubble, const void*, void*) override {
    sleep(zero_bubble ? ms_.backward - ms_.weight : ms_.backward);
  }
  void weight(int, int64_t) override { sleep(ms_.weight); }

 private:
  static void sleep(double ms) { std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(ms)); }
  PipelineDurations ms_;
};

}  // namespace

PipelineRun run_pipeline_with_sleeps(const Comm& comm, const ScheduleOps& sched, const PipelineDurations& ms) {
  DSV3_CHECK(comm.size() == sched.ranks, "[schedule] the schedule has ", sched.ranks, " ranks; the launch has ",
             comm.size(), " (mpirun -np ", sched.ranks, ")");
  SleepWork work(ms);
  TraceRecorder trace;
  trace.enabled = true;
  comm.barrier();
  trace.restart();
  const double busy = run_pipeline(comm, sched, work, trace);
  const double end_ms = trace.now_us() / 1e3;
  // Rank 0 collects each rank's end, busy time and spans.
  const double mine[2] = {end_ms, busy};
  std::vector<double> all(size_t(2 * sched.ranks));
  comm.allgather(mine, 2, all.data());
  PipelineRun run;
  for (int64_t q = 0; q < sched.ranks; ++q) {
    run.makespan_ms = std::max(run.makespan_ms, all[size_t(2 * q)]);
    run.busy_ms.push_back(all[size_t(2 * q + 1)]);
  }
  run.timeline = gather_trace_events(comm, trace.events());
  return run;
}

}  // namespace dsv3
