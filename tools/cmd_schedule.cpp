// `dsv3 schedule`: a pipeline schedule on the ranks of an mpirun launch with sleeps for computation
// (src/dist/pipeline_run.h): its measured bubble beside the simulator's and the report's formula.
#include <cstdio>

#include "commands.h"
#include "core/error.h"
#include "dist/comm.h"
#include "dist/pipeline_run.h"

namespace dsv3::cli {

Runner add_schedule(CLI::App& app) {
  struct Args {
    std::string schedule = "dualpipe", trace;
    int64_t micro_batches = 0;
    PipelineDurations ms{20, 40, 20};
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "schedule", "Run a pipeline schedule (1f1b, dualpipe, dualpipev) on the ranks of `mpirun -np P` with sleeps in "
                  "place of computation and real messages between stages; print its measured bubble beside the "
                  "simulated one and the report's formula");
  cmd->add_option("--pp-schedule", a->schedule, "1f1b, dualpipe or dualpipev")->capture_default_str()
      ->check(CLI::IsMember({"1f1b", "dualpipe", "dualpipev"}));
  cmd->add_option("--micro-batches", a->micro_batches, "Micro-batches (default: 2 × ranks)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--forward-ms", a->ms.forward, "F: one stage's forward of a micro-batch")->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--backward-ms", a->ms.backward, "B: its whole backward")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--weight-ms", a->ms.weight, "W: the weight-gradient part of B (deferred by zero-bubble backwards)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--trace", a->trace, "Write every rank's ops as a Chrome trace (open it in Perfetto)");
  return [a] {
    const Comm& comm = Comm::world();
    DSV3_CHECK(comm.size() >= 2, "[schedule] run it under mpirun with one rank per pipeline stage: "
               "mpirun -np P dsv3 schedule ...");
    DSV3_CHECK(a->ms.weight < a->ms.backward, "[schedule] --weight-ms must be below --backward-ms (W is part of B)");
    const PipelineSchedule kind = parse_pipeline_schedule(a->schedule);
    const int64_t P = comm.size(), M = a->micro_batches > 0 ? a->micro_batches : 2 * P;
    const ScheduleOps ops = build_pipeline_schedule(kind, P, M);
    const PipelineSimulation sim = simulate_pipeline(ops, a->ms);
    DSV3_CHECK(!sim.deadlock, "[schedule] the schedule deadlocks: ", sim.deadlock_at);
    const PipelineRun run = run_pipeline_with_sleeps(comm, ops, a->ms);
    if (comm.rank() != 0) return 0;
    std::printf("%s on %lld ranks, %lld micro-batches, F %.0f ms, B %.0f ms, W %.0f ms\n", pipeline_schedule_name(kind),
                (long long)P, (long long)M, a->ms.forward, a->ms.backward, a->ms.weight);
    std::printf("measured   step %.1f ms, bubble %.1f ms (%.1f%%)\n", run.makespan_ms, run.bubble_ms(),
                100 * run.bubble_ms() / run.makespan_ms);
    std::printf("simulated  step %.1f ms, bubble %.1f ms (%.1f%%)\n", sim.makespan, sim.bubble(), 100 * sim.bubble_fraction());
    std::printf("formula    bubble %.1f ms (SPEC.md §4, F&B = F + B)\n", formula_bubble(kind, P, a->ms));
    if (!a->trace.empty()) {
      std::vector<std::string> names;
      for (int64_t r = 0; r < P; ++r) names.push_back(cat("rank ", r));
      write_chrome_trace(a->trace, run.timeline, names);
      std::printf("trace      %s\n", a->trace.c_str());
    }
    return 0;
  };
}

}  // namespace dsv3::cli
