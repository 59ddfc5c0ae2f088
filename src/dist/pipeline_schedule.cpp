#include "dist/pipeline_schedule.h"

#include <algorithm>
#include <deque>

#include "core/error.h"

namespace dsv3 {

namespace {

using Kind = PipelineOp::Kind;

PipelineOp f(int phase) { return {Kind::forward, phase, 0, false}; }
PipelineOp b(int phase, bool zb = false) { return {Kind::backward, phase, 0, zb}; }
PipelineOp w() { return {Kind::weight, 0, 0, false}; }
PipelineOp fb(int forward_phase, int backward_phase) { return {Kind::forward_backward, forward_phase, backward_phase, false}; }

// DualPipe's eight steps for one rank (DualPipeV's with h = r, Q = P, `half` = M).
std::vector<PipelineOp> dual_pipe_ops(int64_t h, int64_t Q, int64_t half) {
  std::vector<PipelineOp> ops;
  const auto repeat = [&](int64_t n, std::initializer_list<PipelineOp> group) {
    for (int64_t i = 0; i < n; ++i) ops.insert(ops.end(), group);
  };
  repeat(2 * (Q - h - 1), {f(0)});
  repeat(h + 1, {f(0), f(1)});
  repeat(Q - h - 1, {b(1, true), w(), f(1)});
  repeat(half - 2 * Q + h + 1, {fb(0, 1), fb(1, 0)});
  repeat(Q - h - 1, {b(1), fb(1, 0)});
  // Backwards of both phases; from the middle on they leave their weight gradients for step 8.
  bool zb = false;
  const int64_t n6 = h + 1;
  for (int64_t i = 0; i < n6; ++i) {
    if (i == n6 / 2 && h % 2 == 1) zb = true;
    ops.push_back(b(1, zb));
    if (i == n6 / 2 && h % 2 == 0) zb = true;
    ops.push_back(b(0, zb));
  }
  repeat(Q - h - 1, {w(), b(0, true)});
  repeat(h + 1, {w()});
  return ops;
}

}  // namespace

PipelineSlot pipeline_slot(PipelineSchedule kind, int64_t P, int64_t r, int phase) {
  switch (kind) {
    case PipelineSchedule::one_f_one_b: return {0, r};
    case PipelineSchedule::dualpipe: {
      const int q = r < P / 2 ? phase : 1 - phase;  // phase 0: downward on the first half, upward on the second
      return {q, q == 0 ? r : P - 1 - r};
    }
    case PipelineSchedule::dualpipev: return {0, phase == 0 ? r : 2 * P - 1 - r};
  }
  return {};
}

int64_t pipeline_rank_of(PipelineSchedule kind, int64_t P, int pipe, int64_t stage) {
  switch (kind) {
    case PipelineSchedule::one_f_one_b: return stage;
    case PipelineSchedule::dualpipe: return pipe == 0 ? stage : P - 1 - stage;
    case PipelineSchedule::dualpipev: return stage < P ? stage : 2 * P - 1 - stage;
  }
  return 0;
}

int64_t pipeline_stages(PipelineSchedule kind, int64_t P) { return kind == PipelineSchedule::dualpipev ? 2 * P : P; }
int pipeline_pipes(PipelineSchedule kind) { return kind == PipelineSchedule::dualpipe ? 2 : 1; }

ScheduleOps build_pipeline_schedule(PipelineSchedule kind, int64_t P, int64_t M) {
  DSV3_CHECK(P >= 1, "[pipeline] --pp must be at least 1, got ", P);
  ScheduleOps s;
  s.kind = kind;
  s.ranks = P;
  s.micro_batches = M;
  s.ops.resize(size_t(P));
  switch (kind) {
    case PipelineSchedule::one_f_one_b:
      DSV3_CHECK(M >= 1, "[pipeline] --micro-batches must be at least 1, got ", M);
      for (int64_t r = 0; r < P; ++r) {
        const int64_t warm = std::min(P - r - 1, M);
        auto& ops = s.ops[size_t(r)];
        for (int64_t i = 0; i < warm; ++i) ops.push_back(f(0));
        for (int64_t i = 0; i < M - warm; ++i) ops.insert(ops.end(), {f(0), b(0)});
        for (int64_t i = 0; i < warm; ++i) ops.push_back(b(0));
      }
      break;
    case PipelineSchedule::dualpipe:
      DSV3_CHECK(P % 2 == 0, "[pipeline] DualPipe needs an even --pp, got ", P);
      DSV3_CHECK(M % 2 == 0 && M >= 2 * P, "[pipeline] DualPipe over ", P, " ranks needs an even --micro-batches >= ",
                 2 * P, ", got ", M);
      for (int64_t r = 0; r < P; ++r) s.ops[size_t(r)] = dual_pipe_ops(std::min(r, P - 1 - r), P / 2, M / 2);
      break;
    case PipelineSchedule::dualpipev:
      DSV3_CHECK(M >= 2 * P, "[pipeline] DualPipeV over ", P, " ranks needs --micro-batches >= ", 2 * P, ", got ", M);
      for (int64_t r = 0; r < P; ++r) s.ops[size_t(r)] = dual_pipe_ops(r, P, M);
      break;
  }
  return s;
}

double PipelineSimulation::bubble() const {
  double idle = 0;
  for (double b : busy) idle = std::max(idle, makespan - b);
  return idle;
}

double PipelineSimulation::bubble_fraction() const { return makespan > 0 ? bubble() / makespan : 0; }

PipelineSimulation simulate_pipeline(const ScheduleOps& sched, const PipelineDurations& d) {
  const PipelineSchedule kind = sched.kind;
  const int64_t P = sched.ranks;
  const int pipes = pipeline_pipes(kind);
  const int64_t stages = pipeline_stages(kind, P);
  const int64_t per_pipe = kind == PipelineSchedule::dualpipe ? sched.micro_batches / 2 : sched.micro_batches;
  // Finish times of each (pipe, stage, micro-batch)'s forward and backward; < 0: not run yet.
  const auto index = [&](int q, int64_t s, int64_t i) { return size_t((q * stages + s) * per_pipe + i); };
  std::vector<double> f_done(size_t(pipes * stages * per_pipe), -1), b_done(f_done.size(), -1);
  PipelineSimulation sim;
  sim.busy.assign(size_t(P), 0);
  for (auto* v : {&sim.forwards, &sim.backwards, &sim.zero_bubble_backwards, &sim.weights}) v->assign(size_t(P), 0);
  sim.forwards_per_phase.assign(size_t(P), std::vector<int64_t>(2, 0));
  sim.backwards_per_phase = sim.forwards_per_phase;
  std::vector<size_t> pc(size_t(P), 0);
  std::vector<double> clock(size_t(P), 0);
  std::vector<std::deque<int>> deferred(static_cast<size_t>(P));

  // The time a rank's next forward / backward of `phase` may start (its dependency's finish), or < 0.
  const auto forward_ready = [&](int64_t r, int phase, std::string* why) -> double {
    const PipelineSlot at = pipeline_slot(kind, P, r, phase);
    const int64_t i = sim.forwards_per_phase[size_t(r)][size_t(phase)];
    if (i >= per_pipe) {
      if (why) *why = cat("rank ", r, " runs forward ", i + 1, " of phase ", phase, " with ", per_pipe, " micro-batches");
      return -2;
    }
    if (at.stage == 0) return 0;
    const double t = f_done[index(at.pipe, at.stage - 1, i)];
    if (t < 0 && why) *why = cat("rank ", r, " waits for stage ", at.stage - 1, "'s forward of micro-batch ", i);
    return t;
  };
  const auto backward_ready = [&](int64_t r, int phase, std::string* why) -> double {
    const PipelineSlot at = pipeline_slot(kind, P, r, phase);
    const int64_t i = sim.backwards_per_phase[size_t(r)][size_t(phase)];
    if (i >= per_pipe) {
      if (why) *why = cat("rank ", r, " runs backward ", i + 1, " of phase ", phase, " with ", per_pipe, " micro-batches");
      return -2;
    }
    const double t = at.stage == stages - 1 ? f_done[index(at.pipe, at.stage, i)] : b_done[index(at.pipe, at.stage + 1, i)];
    if (t < 0 && why) *why = cat("rank ", r, " waits for ", at.stage == stages - 1 ? "its own forward" : "the next stage's backward",
                                 " of micro-batch ", i);
    return t;
  };
  const auto run_forward = [&](int64_t r, int phase, double end) {
    const PipelineSlot at = pipeline_slot(kind, P, r, phase);
    f_done[index(at.pipe, at.stage, sim.forwards_per_phase[size_t(r)][size_t(phase)]++)] = end;
    ++sim.forwards[size_t(r)];
  };
  const auto run_backward = [&](int64_t r, int phase, double end, bool zb) {
    const PipelineSlot at = pipeline_slot(kind, P, r, phase);
    b_done[index(at.pipe, at.stage, sim.backwards_per_phase[size_t(r)][size_t(phase)]++)] = end;
    ++sim.backwards[size_t(r)];
    if (zb) {
      ++sim.zero_bubble_backwards[size_t(r)];
      deferred[size_t(r)].push_back(phase);
    }
  };

  for (;;) {
    bool progressed = false, finished = true;
    for (int64_t r = 0; r < P; ++r) {
      const auto& ops = sched.ops[size_t(r)];
      while (pc[size_t(r)] < ops.size()) {
        const PipelineOp& op = ops[pc[size_t(r)]];
        double ready = 0, duration = 0;
        switch (op.kind) {
          case Kind::forward: ready = forward_ready(r, op.phase, nullptr); duration = d.forward; break;
          case Kind::backward:
            ready = backward_ready(r, op.phase, nullptr);
            duration = op.zero_bubble ? d.backward - d.weight : d.backward;
            break;
          case Kind::weight: ready = deferred[size_t(r)].empty() ? -2 : 0; duration = d.weight; break;
          case Kind::forward_backward: {
            const double a = forward_ready(r, op.phase, nullptr), b2 = backward_ready(r, op.backward_phase, nullptr);
            ready = a < 0 || b2 < 0 ? std::min(a, b2) : std::max(a, b2);
            duration = d.forward + d.backward;
            break;
          }
        }
        if (ready < 0) break;
        const double start = std::max(clock[size_t(r)], ready), end = start + duration;
        std::string name;
        const auto& nf = sim.forwards_per_phase[size_t(r)];
        const auto& nb = sim.backwards_per_phase[size_t(r)];
        switch (op.kind) {
          case Kind::forward: name = cat("F", op.phase, " mb ", nf[size_t(op.phase)]); break;
          case Kind::backward: name = cat("B", op.phase, op.zero_bubble ? " (input) mb " : " mb ",
                                          nb[size_t(op.phase)]); break;
          case Kind::weight: name = cat("W", deferred[size_t(r)].front()); break;
          case Kind::forward_backward:
            name = cat("F", op.phase, " mb ", nf[size_t(op.phase)], " + B", op.backward_phase, " mb ",
                       nb[size_t(op.backward_phase)]);
            break;
        }
        const char* category = op.kind == Kind::forward ? "forward" : op.kind == Kind::backward ? "backward"
                             : op.kind == Kind::weight ? "weight" : "forward+backward";
        sim.timeline.push_back({name, category, start * 1e3, duration * 1e3, r, 0});
        switch (op.kind) {
          case Kind::forward: run_forward(r, op.phase, end); break;
          case Kind::backward: run_backward(r, op.phase, end, op.zero_bubble); break;
          case Kind::weight: deferred[size_t(r)].pop_front(); ++sim.weights[size_t(r)]; break;
          case Kind::forward_backward:
            run_forward(r, op.phase, end);
            run_backward(r, op.backward_phase, end, false);
            break;
        }
        clock[size_t(r)] = end;
        sim.busy[size_t(r)] += duration;
        sim.makespan = std::max(sim.makespan, end);
        ++pc[size_t(r)];
        progressed = true;
      }
      if (pc[size_t(r)] < ops.size()) finished = false;
    }
    if (finished) break;
    if (!progressed) {
      sim.deadlock = true;
      for (int64_t r = 0; r < P && sim.deadlock_at.empty(); ++r) {
        if (pc[size_t(r)] >= sched.ops[size_t(r)].size()) continue;
        const PipelineOp& op = sched.ops[size_t(r)][pc[size_t(r)]];
        if (op.kind == Kind::weight) sim.deadlock_at = cat("rank ", r, " runs a W with no deferred weight gradient");
        else if (op.kind == Kind::backward || (op.kind == Kind::forward_backward && forward_ready(r, op.phase, nullptr) >= 0))
          backward_ready(r, op.kind == Kind::backward ? op.phase : op.backward_phase, &sim.deadlock_at);
        else forward_ready(r, op.phase, &sim.deadlock_at);
      }
      break;
    }
  }
  return sim;
}

double formula_bubble(PipelineSchedule kind, int64_t P, const PipelineDurations& d) {
  const double fb = d.forward + d.backward;
  switch (kind) {
    case PipelineSchedule::one_f_one_b: return double(P - 1) * (d.forward + d.backward);
    case PipelineSchedule::dualpipe: return (double(P) / 2 - 1) * (fb + d.backward - 3 * d.weight);
    case PipelineSchedule::dualpipev: return double(P - 1) * (fb + d.backward - 3 * d.weight);
  }
  return 0;
}

}  // namespace dsv3
