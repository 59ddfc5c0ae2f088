// The rank layout of a launch (dist/layout.h): coordinates of each rank, and the errors for layouts that
// cannot work, each naming its flag.
#include <gtest/gtest.h>

#include "dist/layout.h"
#include "test_support.h"

namespace dsv3 {
namespace {

ModelConfig eight_layers() {
  ModelConfig c = testing::tiny_v3_config();  // 8 routed experts
  c.num_hidden_layers = 8;
  return c;
}

TEST(ParallelLayout, RanksAreStageMajorWithDataParallelInnermost) {
  ParallelFlags f;
  f.pp = 2;
  f.ep = 2;
  f.micro_batches = 4;
  f.ranks_per_node = 4;
  // -np 8 --pp 2 --ep 2: two stages of DP4, experts split over 2 ranks and replicated twice.
  const ParallelLayout l = make_parallel_layout(8, 6, f, eight_layers(), 16);
  EXPECT_EQ(l.dp, 4);
  EXPECT_EQ(l.stage(), 1);
  EXPECT_EQ(l.dp_rank(), 2);
  EXPECT_EQ(l.ep_rank(), 0);
  EXPECT_EQ(l.expert_replica(), 1);
  EXPECT_EQ(l.node(), 1);
  EXPECT_EQ(l.micro_batches, 4);  // each pipeline runs grad_accum / D
  EXPECT_NE(l.describe().find("rank 7: stage 1, dp 3, ep 1 (replica 1), node 1"), std::string::npos) << l.describe();
  const ParallelLayout single = make_parallel_layout(1, 0, ParallelFlags{}, eight_layers(), 1);
  EXPECT_TRUE(single.single_process());
  EXPECT_EQ(single.micro_batches, 1);
}

TEST(ParallelLayout, ImpossibleLayoutsNameTheirFlag) {
  const auto error = [](int64_t world, ParallelFlags f, int64_t grad_accum = 4) {
    return testing::error_of([&] { make_parallel_layout(world, 0, f, eight_layers(), grad_accum); });
  };
  ParallelFlags f;
  f.pp = 3;
  EXPECT_NE(error(4, f).find("--pp 3 does not divide the 4 ranks"), std::string::npos);
  f = ParallelFlags{};
  f.dp = 3;
  EXPECT_NE(error(4, f).find("--dp 3"), std::string::npos);
  f = ParallelFlags{};
  f.ep = 3;
  EXPECT_NE(error(6, f, 6).find("does not divide the model's 8 routed experts"), std::string::npos);
  f.ep = 4;
  EXPECT_NE(error(2, f).find("--ep 4 must divide the 2 data-parallel ranks"), std::string::npos);
  f = ParallelFlags{};
  f.pp = 4;
  f.schedule = PipelineSchedule::dualpipe;
  f.micro_batches = 6;
  EXPECT_NE(error(4, f, 6).find("an even --micro-batches >= 8"), std::string::npos);
  EXPECT_NE(error(4, f, 8).find("--micro-batches 6 disagrees with --grad-accum 8 over 1 data-parallel rank"),
            std::string::npos);
  f.pp = 3;
  EXPECT_NE(error(3, f, 6).find("DualPipe needs an even --pp"), std::string::npos);
  f = ParallelFlags{};
  f.pp = 4;
  f.micro_batches = 2;
  EXPECT_NE(error(4, f, 2).find("1F1B over 4 stages needs --micro-batches >= 4"), std::string::npos);
  f = ParallelFlags{};
  f.pp = 8;
  f.schedule = PipelineSchedule::dualpipev;
  f.micro_batches = 16;
  EXPECT_NE(error(8, f, 16).find("needs 16 stages of at least one layer; the model has 8"), std::string::npos);
  EXPECT_NE(error(2, ParallelFlags{}, 3).find("--grad-accum 3 must be a multiple of the 2"), std::string::npos);
  f = ParallelFlags{};
  f.ranks_per_node = 3;
  EXPECT_NE(error(4, f).find("--ranks-per-node 3 does not divide"), std::string::npos);
  EXPECT_NE(testing::error_of([] { parse_pipeline_schedule("gpipe"); }).find("--pp-schedule"), std::string::npos);
}

}  // namespace
}  // namespace dsv3
