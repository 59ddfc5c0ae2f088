#include "dist/layout.h"

#include <sstream>

#include "core/error.h"

namespace dsv3 {

const char* pipeline_schedule_name(PipelineSchedule s) {
  switch (s) {
    case PipelineSchedule::one_f_one_b: return "1f1b";
    case PipelineSchedule::dualpipe: return "dualpipe";
    case PipelineSchedule::dualpipev: return "dualpipev";
  }
  return "?";
}

PipelineSchedule parse_pipeline_schedule(const std::string& name) {
  if (name == "1f1b") return PipelineSchedule::one_f_one_b;
  if (name == "dualpipe") return PipelineSchedule::dualpipe;
  if (name == "dualpipev") return PipelineSchedule::dualpipev;
  DSV3_FAIL("[train] --pp-schedule must be 1f1b, dualpipe or dualpipev, got \"", name, "\"");
}

ParallelLayout make_parallel_layout(int64_t world, int64_t rank, const ParallelFlags& f, const ModelConfig& config,
                                    int64_t grad_accum) {
  DSV3_CHECK(world >= 1 && rank >= 0 && rank < world, "[train] rank ", rank, " of ", world, " ranks");
  ParallelLayout l;
  l.world = world;
  l.rank = rank;
  DSV3_CHECK(f.pp >= 1, "[train] --pp must be at least 1, got ", f.pp);
  DSV3_CHECK(world % f.pp == 0, "[train] --pp ", f.pp, " does not divide the ", world,
             " ranks of the launch (mpirun -np N needs N = pipeline stages × data-parallel ranks)");
  l.pp = f.pp;
  l.dp = world / f.pp;
  DSV3_CHECK(f.dp == 0 || f.dp == l.dp, "[train] --dp ", f.dp, " with --pp ", f.pp, " needs ", f.dp * f.pp,
             " ranks; the launch has ", world, " (--dp defaults to ranks / --pp = ", l.dp, ")");
  DSV3_CHECK(f.ep >= 1 && l.dp % f.ep == 0, "[train] --ep ", f.ep, " must divide the ", l.dp,
             " data-parallel ranks of each stage (experts are split over E of them and replicated D / E times)");
  DSV3_CHECK(config.n_routed_experts == 0 ? f.ep == 1 : config.n_routed_experts % f.ep == 0, "[train] --ep ", f.ep,
             " does not divide the model's ", config.n_routed_experts, " routed experts");
  l.ep = f.ep;
  l.schedule = f.schedule;
  DSV3_CHECK(grad_accum % l.dp == 0, "[train] --grad-accum ", grad_accum, " must be a multiple of the ", l.dp,
             " data-parallel ranks: each rank runs grad_accum / D of a step's micro-batches");
  // Each data-parallel rank's pipeline runs its grad_accum / D micro-batches of every step.
  l.micro_batches = grad_accum / l.dp;
  DSV3_CHECK(f.micro_batches == 0 || f.micro_batches == l.micro_batches, "[train] --micro-batches ", f.micro_batches,
             " disagrees with --grad-accum ", grad_accum, " over ", l.dp, " data-parallel rank", l.dp > 1 ? "s" : "",
             ": each pipeline runs grad_accum / D = ", l.micro_batches, " micro-batches a step");
  const int64_t P = l.pp, M = l.micro_batches;
  if (P > 1) {
    switch (l.schedule) {
      case PipelineSchedule::one_f_one_b:
        DSV3_CHECK(M >= P, "[train] 1F1B over ", P, " stages needs --micro-batches >= ", P, ", got ", M);
        break;
      case PipelineSchedule::dualpipe:
        DSV3_CHECK(P % 2 == 0, "[train] DualPipe needs an even --pp (each rank holds a stage of both pipes), got ", P);
        DSV3_CHECK(M % 2 == 0 && M >= 2 * P, "[train] DualPipe over ", P, " stages needs an even --micro-batches >= ",
                   2 * P, " (half enter from each end), got ", M);
        break;
      case PipelineSchedule::dualpipev:
        DSV3_CHECK(M >= 2 * P, "[train] DualPipeV over ", P, " ranks needs --micro-batches >= ", 2 * P, ", got ", M);
        break;
    }
    const int64_t layers = config.num_hidden_layers;
    const int64_t stages = l.schedule == PipelineSchedule::dualpipev ? 2 * P : P;
    DSV3_CHECK(layers >= stages, "[train] --pp ", P, " with --pp-schedule ", pipeline_schedule_name(l.schedule),
               " needs ", stages, " stages of at least one layer; the model has ", layers);
  }
  l.ranks_per_node = f.ranks_per_node > 0 ? f.ranks_per_node : world;
  DSV3_CHECK(world % l.ranks_per_node == 0, "[train] --ranks-per-node ", l.ranks_per_node, " does not divide the ",
             world, " ranks");
  return l;
}

std::string ParallelLayout::describe() const {
  std::ostringstream out;
  out << "[train] " << world << " ranks: " << pp << " pipeline stage" << (pp > 1 ? "s" : "") << " ("
      << pipeline_schedule_name(schedule) << ", " << micro_batches << " micro-batches) × " << dp
      << " data-parallel (ZeRO-1), experts split over " << ep << " (each replicated " << dp / ep << "×), "
      << world / ranks_per_node << " node" << (world / ranks_per_node > 1 ? "s" : "") << "\n";
  for (int64_t r = 0; r < world; ++r) {
    ParallelLayout at = *this;
    at.rank = r;
    out << "  rank " << r << ": stage " << at.stage() << ", dp " << at.dp_rank() << ", ep " << at.ep_rank()
        << " (replica " << at.expert_replica() << "), node " << at.node() << "\n";
  }
  return out.str();
}

}  // namespace dsv3
