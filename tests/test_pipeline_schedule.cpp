// Pipeline schedules without a model (dist/pipeline_schedule.h): every rank runs each of its stages'
// micro-batches forward and backward once, deferred weight gradients match the zero-bubble backwards, no
// schedule deadlocks for P in {2, 4, 6, 8} and M in {2P, 2P + 2, 3P}, and the simulated bubbles against
// SPEC.md §4's formulas.
#include <gtest/gtest.h>

#include <algorithm>

#include "dist/pipeline_schedule.h"
#include "dist/pipeline_train.h"
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

// Training stages: consecutive layers covering the model, at least one each, the largest stage's FLOPs
// no more than the even split's; a heavy head moves layers off the last stage.
TEST(PipelineStages, LayersAreSplitToBalanceFlops) {
  ModelConfig c = testing::tiny_v3_config();
  c.num_hidden_layers = 12;
  for (int64_t stages : {1, 2, 3, 4, 6, 12}) {
    const std::vector<ModelPart> parts = pipeline_stage_parts(c, stages, 64, 1);
    ASSERT_EQ(int64_t(parts.size()), stages);
    double largest = 0, even_largest = 0;
    for (int64_t s = 0; s < stages; ++s) {
      const ModelPart& p = parts[size_t(s)];
      EXPECT_EQ(p.first_layer, s == 0 ? 0 : parts[size_t(s - 1)].end_layer);
      EXPECT_GT(p.end_layer, p.first_layer);
      largest = std::max(largest, part_train_flops(c, p, 1, 64, 1));
      const ModelPart even{s * 12 / stages, (s + 1) * 12 / stages};
      even_largest = std::max(even_largest, part_train_flops(c, even, 1, 64, 1));
    }
    EXPECT_EQ(parts.back().end_layer, 12);
    EXPECT_LE(largest, even_largest) << stages << " stages";
  }
  c.vocab_size *= 64;  // a head as heavy as several layers
  const std::vector<ModelPart> parts = pipeline_stage_parts(c, 2, 64, 1);
  EXPECT_LT(parts[1].end_layer - parts[1].first_layer, parts[0].end_layer - parts[0].first_layer);
  EXPECT_NE(testing::error_of([&] { pipeline_stage_parts(c, 13, 64, 1); }).find("13 pipeline stages need at least "
                                                                                "one layer each"),
            std::string::npos);
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
