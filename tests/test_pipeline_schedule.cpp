// Pipeline schedules without a model (dist/pipeline_schedule.h): every rank runs each of its stages'
// micro-batches forward and backward once, deferred weight gradients match the zero-bubble backwards, no
// schedule deadlocks for P in {2, 4, 6, 8} and M in {2P, 2P + 2, 3P}, and the simulated bubbles against
// SPEC.md §4's formulas.
#include <gtest/gtest.h>

#include "dist/pipeline_schedule.h"
#include "test_support.h"

namespace dsv3 {
namespace {

TEST(PipelineSchedule, EveryScheduleRunsEachMicroBatchOnceAndNeverDeadlocks) {
  for (const PipelineSchedule kind :
       {PipelineSchedule::one_f_one_b, PipelineSchedule::dualpipe, PipelineSchedule::dualpipev}) {
    for (const int64_t P : {2, 4, 6, 8}) {
      for (const int64_t M : {2 * P, 2 * P + 2, 3 * P}) {
        SCOPED_TRACE(::testing::Message() << pipeline_schedule_name(kind) << " P " << P << " M " << M);
        const ScheduleOps s = build_pipeline_schedule(kind, P, M);
        const PipelineSimulation sim = simulate_pipeline(s, {});
        ASSERT_FALSE(sim.deadlock) << sim.deadlock_at;
        // Per rank and phase: DualPipe runs M/2 micro-batches through each of its two stages, DualPipeV
        // M through each, 1F1B M through its one.
        const int64_t per_phase = kind == PipelineSchedule::dualpipe ? M / 2 : M;
        const int phases = kind == PipelineSchedule::one_f_one_b ? 1 : 2;
        for (int64_t r = 0; r < P; ++r) {
          for (int p = 0; p < phases; ++p) {
            EXPECT_EQ(sim.forwards_per_phase[size_t(r)][size_t(p)], per_phase) << "rank " << r << " phase " << p;
            EXPECT_EQ(sim.backwards_per_phase[size_t(r)][size_t(p)], per_phase) << "rank " << r << " phase " << p;
          }
          EXPECT_EQ(sim.weights[size_t(r)], sim.zero_bubble_backwards[size_t(r)]) << "rank " << r;
        }
        // The timeline has every op once, and a rank's ops never overlap.
        size_t ops = 0;
        for (const auto& rank_ops : s.ops) ops += rank_ops.size();
        ASSERT_EQ(sim.timeline.size(), ops);
        std::vector<double> rank_end(size_t(P), 0);
        for (const TraceEvent& e : sim.timeline) {
          EXPECT_GE(e.start_us, rank_end[size_t(e.process)]);
          rank_end[size_t(e.process)] = e.start_us + e.duration_us;
        }
      }
    }
  }
}

TEST(PipelineSchedule, SimulatedBubblesAgainstTheFormulas) {
  const PipelineDurations d;  // F 1, B 2, W 1
  for (const int64_t P : {2, 4, 8}) {
    const int64_t M = 4 * P;
    SCOPED_TRACE(::testing::Message() << "P " << P << " M " << M);
    // 1F1B with uniform stages: exactly (P − 1)(F + B).
    const PipelineSimulation one = simulate_pipeline(build_pipeline_schedule(PipelineSchedule::one_f_one_b, P, M), d);
    EXPECT_DOUBLE_EQ(one.bubble(), formula_bubble(PipelineSchedule::one_f_one_b, P, d));
    EXPECT_DOUBLE_EQ(one.makespan, double(M) * 3 + formula_bubble(PipelineSchedule::one_f_one_b, P, d));
    // DualPipe and DualPipeV (pairs charged F + B): the formulas' (PP/2 − 1)(F&B + B − 3W), PP = P and 2P.
    for (const PipelineSchedule kind : {PipelineSchedule::dualpipe, PipelineSchedule::dualpipev}) {
      const PipelineSimulation sim = simulate_pipeline(build_pipeline_schedule(kind, P, M), d);
      printf("[ schedule ] %s P %lld M %lld: simulated bubble %.1f, formula %.1f, makespan %.1f\n",
             pipeline_schedule_name(kind), (long long)P, (long long)M, sim.bubble(), formula_bubble(kind, P, d), sim.makespan);
      EXPECT_DOUBLE_EQ(sim.bubble(), formula_bubble(kind, P, d)) << pipeline_schedule_name(kind);
      EXPECT_LT(sim.bubble(), one.bubble());
    }
  }
  EXPECT_DOUBLE_EQ(formula_bubble(PipelineSchedule::dualpipe, 16, d), 7 * 2.0);
}

TEST(PipelineSchedule, ImpossibleSchedulesNameTheFlag) {
  EXPECT_NE(testing::error_of([] { build_pipeline_schedule(PipelineSchedule::dualpipe, 3, 6); }).find("even --pp"),
            std::string::npos);
  EXPECT_NE(testing::error_of([] { build_pipeline_schedule(PipelineSchedule::dualpipe, 4, 6); })
                .find("--micro-batches >= 8"), std::string::npos);
  EXPECT_NE(testing::error_of([] { build_pipeline_schedule(PipelineSchedule::dualpipev, 4, 7); })
                .find("--micro-batches >= 8"), std::string::npos);
}

}  // namespace
}  // namespace dsv3
