// The training loop (train/trainer.h): it learns, a resumed run is bit-identical to an uninterrupted
// one, checkpoints load in the inference engine, the balancing modes do what they say, and the
// metrics file has one line per step.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/tokenizer.h"
#include "model/model.h"
#include "test_support.h"
#include "test_train_grad_support.h"
#include "train/bpe_trainer.h"
#include "train/token_shards.h"
#include "train/trainer.h"

namespace dsv3 {
namespace {

using nlohmann::json;
using testing::TempDir;
namespace fs = std::filesystem;

// A corpus with structure to learn: short sentences from a small grammar.
std::vector<std::string> corpus(int n, uint32_t seed) {
  static const char* subjects[] = {"the cat", "a dog", "my friend", "the old man", "she", "he"};
  static const char* verbs[] = {"sees", "likes", "finds", "follows", "hears"};
  static const char* objects[] = {"the ball", "a bird", "the river", "his hat", "the red door"};
  std::mt19937 rng(seed);
  std::vector<std::string> docs;
  for (int d = 0; d < n; ++d) {
    std::string text;
    for (int s = 0; s < 6; ++s)
      text += std::string(s ? " " : "") + subjects[rng() % 6] + " " + verbs[rng() % 5] + " " + objects[rng() % 5] + ".";
    docs.push_back(text);
  }
  return docs;
}

struct Data {
  TempDir dir{"trainer_data"};
  std::string shards;
  Data() {
    BpeTrainerOptions options;
    options.vocab_size = 320;
    BpeTrainer trainer(options);
    trainer.add_texts(corpus(50, 1));
    write_trained_tokenizer(trainer.train(), dir.sub("tokenizer.json"));
    const Tokenizer tokenizer = Tokenizer::from_file(dir.sub("tokenizer.json"));
    TokenShardsWriteOptions w;
    w.val_fraction = 0.2;
    w.tokenizer_path = dir.sub("tokenizer.json");
    shards = dir.sub("shards");
    write_token_shards(corpus(200, 2), tokenizer, shards, w);
  }
};

const Data& data() {
  static const Data d;
  return d;
}

TrainRunOptions small_run(int64_t steps) {
  TrainRunOptions o;
  o.config = testing::v3_grad_config();
  o.config.vocab_size = 320;
  o.config.bos_token_id = 0;
  o.config.eos_token_id = 1;
  o.preset = "test";
  o.batch_size = 4;
  o.seq_len = 32;
  o.steps = steps;
  o.seed = 9;
  o.schedule = LrSchedule::deepseek_v3(steps, 1e-2);
  o.init_std = 0.02;
  o.eval_every = 0;
  o.eval_sequences = 8;
  return o;
}

std::vector<json> read_lines(const std::string& path) {
  std::vector<json> lines;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) lines.push_back(json::parse(line));
  return lines;
}

bool same_bits(const TrainParams<float>& a, const TrainParams<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), size_t(a.size()) * sizeof(float)) == 0;
}

TEST(Trainer, LossFallsAndValidationIsReported) {
  TempDir out("trainer_learn");
  TrainerPaths paths{data().shards, out.path(), out.sub("metrics.jsonl"), "", ""};
  TrainRunOptions o = small_run(40);
  o.eval_every = 20;
  Trainer trainer(o, paths);
  const double before = trainer.evaluate();
  std::vector<StepRecord> records;
  trainer.run([&](const StepRecord& r) { records.push_back(r); });
  ASSERT_EQ(records.size(), 40u);
  ASSERT_TRUE(records.back().val_loss.has_value());
  ASSERT_TRUE(records[19].val_loss.has_value());
  EXPECT_FALSE(records[10].val_loss.has_value());
  EXPECT_NEAR(before, std::log(320.0), 0.2);  // near-uniform at init
  EXPECT_LT(*records.back().val_loss, before - 1.5) << "40 steps on a small grammar should learn a lot";
  EXPECT_EQ(records.back().tokens, 40 * 4 * 32);
  EXPECT_EQ(records.back().moe_layers, (std::vector<int64_t>{1, 2}));  // main MoE layer + MTP block
  ASSERT_EQ(records.back().mtp_loss.size(), 1u);
  EXPECT_LT(records.back().mtp_loss[0], records.front().mtp_loss[0]);
  for (const StepRecord& r : records) {
    int64_t total = 0;
    for (int64_t l : r.expert_load[0]) total += l;
    EXPECT_EQ(total, 4 * 32 * 3);  // every token goes to K = 3 experts
  }
  // Metrics: a header and one line per step with the documented fields.
  const std::vector<json> lines = read_lines(out.sub("metrics.jsonl"));
  ASSERT_EQ(lines.size(), 41u);
  EXPECT_EQ(lines[0]["type"], "run");
  for (const char* key : {"step", "tokens", "loss", "lr", "tokens_per_s", "max_vio", "max_vio_layers", "expert_load"})
    EXPECT_TRUE(lines[5].contains(key)) << key;
  EXPECT_TRUE(lines[20].contains("val_loss"));
  EXPECT_FALSE(lines[21].contains("val_loss"));
}

TEST(Trainer, ResumedRunIsBitIdenticalToAnUninterruptedOne) {
  TempDir a("trainer_straight"), b("trainer_resumed");
  TrainRunOptions o = small_run(6);
  o.grad_accum = 2;
  o.adamw.moments = MomentDtype::bf16;
  Trainer straight(o, TrainerPaths{data().shards, a.path(), a.sub("metrics.jsonl"), "", ""});
  straight.run(nullptr);

  // Stop after 3 steps (as an interruption does), then continue from the checkpoint in a new trainer.
  std::atomic<bool> stop{false};
  {
    Trainer first(o, TrainerPaths{data().shards, b.path(), b.sub("metrics.jsonl"), "", ""});
    first.run([&](const StepRecord& r) { stop = r.step == 3; }, &stop);
    EXPECT_EQ(first.step(), 3);
  }
  // A partly written later step in the metrics file is dropped on resume.
  std::ofstream(b.sub("metrics.jsonl"), std::ios::app) << "{\"step\": 4, \"loss\": 1.0}\n";
  Trainer resumed = Trainer::resume(b.path(), TrainerPaths{"", "", b.sub("metrics.jsonl"), "", ""});
  EXPECT_EQ(resumed.step(), 3);
  EXPECT_EQ(resumed.options().grad_accum, 2);
  resumed.run(nullptr);
  EXPECT_EQ(resumed.step(), 6);
  EXPECT_TRUE(same_bits(straight.params(), resumed.params()));
  const std::vector<json> la = read_lines(a.sub("metrics.jsonl")), lb = read_lines(b.sub("metrics.jsonl"));
  ASSERT_EQ(la.size(), lb.size());
  for (size_t i = 1; i < la.size(); ++i) EXPECT_EQ(la[i]["loss"], lb[i]["loss"]) << "line " << i;

  // The saved checkpoints are the same weights, and the resumed run can be extended.
  const TrainParams<float> pa = load_train_params<float>(a.path()), pb = load_train_params<float>(b.path());
  EXPECT_TRUE(same_bits(pa, pb));
  Trainer extended = Trainer::resume(b.path(), TrainerPaths{});
  extended.set_steps(7);
  extended.run(nullptr);
  EXPECT_EQ(extended.step(), 7);
}

TEST(Trainer, CheckpointLoadsInTheInferenceEngine) {
  TempDir out("trainer_ckpt");
  Trainer trainer(small_run(2), TrainerPaths{data().shards, out.path(), "", "", ""});
  trainer.run(nullptr);
  for (const char* file : {"config.json", "model.safetensors", "tokenizer.json", "optimizer.safetensors",
                           "trainer_state.json"})
    EXPECT_TRUE(fs::is_regular_file(out.sub(file))) << file;
  EXPECT_FALSE(fs::exists(out.sub(".staging")));
  const std::unique_ptr<Model> model = load_model(out.path());
  EXPECT_EQ(model->config.vocab_size, 320);
  EXPECT_EQ(model->config.num_nextn_predict_layers, 1);
}

TEST(Trainer, BalancingModes) {
  // aux-free moves the correction biases; aux-loss and none leave them at zero; aux-loss adds a loss.
  for (BalanceMode mode : {BalanceMode::aux_free, BalanceMode::aux_loss, BalanceMode::none}) {
    TempDir out("trainer_balance");
    TrainRunOptions o = small_run(3);
    o.balance = mode;
    o.balance_alpha = mode == BalanceMode::aux_loss ? 1e-2 : 0.0;
    Trainer trainer(o, TrainerPaths{data().shards, out.path(), "", "", ""});
    double balance_loss = 0;
    trainer.run([&](const StepRecord& r) { balance_loss += r.balance_loss; });
    const ParamInfo& bias = trainer.params().layout().at("model.layers.1.mlp.gate.e_score_correction_bias");
    double moved = 0;
    for (int64_t i = 0; i < bias.numel; ++i) moved += std::fabs(trainer.params().data()[bias.offset + i]);
    SCOPED_TRACE(balance_mode_name(mode));
    if (mode == BalanceMode::aux_free)
      EXPECT_GT(moved, 0.0);
    else
      EXPECT_EQ(moved, 0.0);
    if (mode == BalanceMode::aux_loss)
      EXPECT_GT(balance_loss, 0.0);
    else
      EXPECT_EQ(balance_loss, 0.0);
  }
}

TEST(Trainer, OptionsRoundTripAndClearErrors) {
  const TrainRunOptions o = small_run(10);
  const TrainRunOptions back = TrainRunOptions::from_json(o.to_json(), "test");
  EXPECT_EQ(back.to_json(), o.to_json());
  json broken = o.to_json();
  broken.erase("seq_len");
  try {
    TrainRunOptions::from_json(broken, "state.json");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("state.json: missing field \"seq_len\""), std::string::npos) << e.what();
  }
  TempDir out("trainer_errors");
  TrainRunOptions big_vocab = small_run(2);
  big_vocab.config.vocab_size = 100;  // the shards use 320 ids
  try {
    Trainer t(big_vocab, TrainerPaths{data().shards, out.path(), "", "", ""});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("vocabulary of 320"), std::string::npos) << e.what();
  }
  try {
    Trainer::resume(out.path(), TrainerPaths{});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a checkpoint written by dsv3 train"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dsv3
