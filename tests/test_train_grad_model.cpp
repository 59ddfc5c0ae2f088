// The whole training model: gradients of the full objective (main CE + λ/D·MTP CE + balance loss)
// against finite differences in double on a sample of every tensor; the training forward against the
// inference engine; checkpoint save/load; determinism; the f32 GEMM against its scalar twin.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "core/error.h"
#include "model/model.h"
#include "model/moe.h"
#include "ops/gemm.h"
#include "test_support.h"
#include "test_train_grad_support.h"
#include "train/moe_train.h"
#include "train/train_model.h"
#include "train/train_presets.h"
#include "train/train_step.h"

namespace dsv3 {
namespace {

using testing::check_gradient;
using testing::random_vector;
using testing::v3_grad_config;

// The module tests' config with plain YaRN amplitudes (mscale = mscale_all_dim = 1).
ModelConfig model_grad_config() {
  ModelConfig c = v3_grad_config();
  c.rope_scaling.mscale = 1.0;
  return c;
}

std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, int32_t(vocab - 1));
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int32_t& v : t) v = dist(rng);
  return t;
}

template <typename T>
void randomize(TrainParams<T>& p, uint32_t seed, double std) {
  TrainInitOptions o;
  o.init_std = std;
  init_random(p, seed, o);
  std::mt19937 rng(seed);
  std::normal_distribution<double> noise(0.0, 1.0);
  for (const ParamInfo& info : p.layout().tensors) {
    if (info.alias) continue;
    T* d = p.data() + info.offset;
    if (info.role == TensorRole::norm)
      for (int64_t i = 0; i < info.numel; ++i) d[i] += T(0.2 * noise(rng));
    if (info.role == TensorRole::router_bias)
      for (int64_t i = 0; i < info.numel; ++i) d[i] = T(0.05 * noise(rng));
  }
}

// Every routing decision of the last forward (main layers and MTP blocks).
template <typename T>
std::vector<int32_t> routing(const TrainActivations<T>& a) {
  const ModelConfig& c = a.config();
  std::vector<int32_t> out;
  auto add = [&](const BlockSaved<T>& s, int64_t rows) {
    if (s.moe.indices) out.insert(out.end(), s.moe.indices, s.moe.indices + rows * c.num_experts_per_tok);
  };
  for (const BlockSaved<T>& s : a.layers) add(s, a.shape().rows());
  for (const auto& m : a.mtp) add(m.block, m.shape.rows());
  return out;
}

// The whole objective's gradient, sampled in every trainable tensor.
void check_model(const ModelConfig& c, const TrainOptions& o, int64_t batch, int64_t seq, int64_t samples,
                 bool share_mtp = true) {
  TrainParams<double> params(c, share_mtp);
  TrainParams<double> grads(params.layout_ptr());
  randomize(params, 5, 0.3);
  const int64_t depth = resolve_mtp_depth(c, o);
  TrainActivations<double> acts(c, batch, seq, depth);
  const std::vector<int32_t> tokens = random_tokens(batch * (seq + 1), c.vocab_size, 6);
  const StepStats s = train_forward_backward(params, grads, acts, tokens.data(), o);
  EXPECT_TRUE(std::isfinite(s.loss));
  EXPECT_EQ(int64_t(s.mtp_loss.size()), depth);
  const std::vector<int32_t> chosen = routing(acts);
  // The forward-only loss equals the training step's.
  auto objective = [&] { return train_forward(params, acts, tokens.data(), o).loss; };
  EXPECT_NEAR(objective(), s.loss, 1e-12 * std::fabs(s.loss));
  auto same_routing = [&] { return routing(acts) == chosen; };
  int64_t checked = 0, skipped = 0;
  testing::FdOptions fd;
  fd.samples = samples;
  for (const ParamInfo& info : params.layout().tensors) {
    if (info.alias) continue;
    if (!info.trainable()) {
      for (int64_t i = 0; i < info.numel; ++i) EXPECT_EQ(grads.data()[info.offset + i], 0.0) << info.name;
      continue;
    }
    fd.seed += 3;
    const testing::FdResult r = check_gradient(info.name, params.data() + info.offset, grads.data() + info.offset,
                                               info.numel, objective, fd, same_routing);
    checked += r.checked;
    skipped += r.skipped;
    EXPECT_GT(r.checked, 0) << info.name;
  }
  EXPECT_LE(skipped, checked / 20 + 2) << "routing changed under too many perturbations";
}

TEST(TrainGradModel, V3WithMtpAndSequenceBalanceLoss) {
  TrainOptions o;
  o.mtp_lambda = 0.3;
  o.moe.balance = BalanceLoss::sequence;
  o.moe.balance_alpha = 0.05;
  check_model(model_grad_config(), o, 2, 5, 3);
}

TEST(TrainGradModel, MtpDepthTwoUnsharedHeadsAndTiedEmbedding) {
  ModelConfig c = model_grad_config();
  c.num_nextn_predict_layers = 2;
  TrainOptions o;
  o.mtp_lambda = 0.5;
  check_model(c, o, 2, 5, 2, /*share_mtp=*/false);
  c.tie_word_embeddings = true;
  c.num_nextn_predict_layers = 1;
  check_model(c, o, 1, 6, 2);
}

TEST(TrainGradModel, V2WithoutMtp) {
  ModelConfig c = model_grad_config();
  c.model_type = "deepseek_v2";
  c.q_lora_rank.reset();
  c.n_shared_experts = 2;
  c.n_group = 1;
  c.topk_group = 1;
  c.scoring_func = ScoringFunc::softmax;
  c.topk_method = TopkMethod::greedy;
  c.norm_topk_prob = false;
  c.routed_scaling_factor = 1.0;
  c.num_nextn_predict_layers = 0;
  TrainOptions o;
  o.moe.balance = BalanceLoss::batch;
  o.moe.balance_alpha = 0.05;
  check_model(c, o, 2, 4, 3);
}

TEST(TrainGradModel, MainLossOnlyIsMeanCrossEntropy) {
  // With MTP off and no balance loss, the objective is the main model's mean next-token CE.
  const ModelConfig c = model_grad_config();
  TrainParams<double> params(c);
  randomize(params, 8, 0.3);
  TrainOptions o;
  o.mtp_depth = 0;
  TrainActivations<double> acts(c, 2, 4, 0);
  const std::vector<int32_t> tokens = random_tokens(2 * 5, c.vocab_size, 9);
  std::vector<double> logits(size_t(8 * c.vocab_size));
  const StepStats s = train_forward(params, acts, tokens.data(), o, logits.data());
  double ce = 0;
  for (int64_t r = 0; r < 8; ++r) {
    const double* l = logits.data() + r * c.vocab_size;
    double m = l[0], sum = 0;
    for (int64_t i = 1; i < c.vocab_size; ++i) m = std::max(m, l[i]);
    for (int64_t i = 0; i < c.vocab_size; ++i) sum += std::exp(l[i] - m);
    ce += m + std::log(sum) - l[tokens[size_t((r / 4) * 5 + r % 4 + 1)]];
  }
  EXPECT_NEAR(s.loss, ce / 8, 1e-12);
  EXPECT_EQ(s.loss, s.main_loss);
  ASSERT_EQ(s.expert_load.size(), 1u);
  int64_t total = 0;
  for (int64_t l : s.expert_load[0]) total += l;
  EXPECT_EQ(total, 8 * c.num_experts_per_tok);
  EXPECT_EQ(s.moe_layers[0], 1);
}

// ---- the training forward against the inference engine ----

// Cross-entropy of logits [n, V] against targets.
double mean_ce(const float* logits, int64_t n, int64_t V, const int32_t* targets) {
  double ce = 0;
  for (int64_t r = 0; r < n; ++r) {
    const float* l = logits + r * V;
    double m = l[0], sum = 0;
    for (int64_t i = 1; i < V; ++i) m = std::max(m, double(l[i]));
    for (int64_t i = 0; i < V; ++i) sum += std::exp(double(l[i]) - m);
    ce += m + std::log(sum) - l[targets[r]];
  }
  return ce / double(n);
}

void check_against_inference(const std::string& dir) {
  auto model = load_model(dir);
  const ModelConfig& c = model->config;
  const int64_t n = 12, V = c.vocab_size, H = c.hidden_size;
  const std::vector<int32_t> tokens = random_tokens(n + 1, V, 10);

  TrainParams<float> params = load_train_params<float>(dir);
  TrainOptions o;
  o.mtp_lambda = 0.3;
  const int64_t depth = resolve_mtp_depth(c, o);
  TrainActivations<float> acts(params.config(), 1, n, depth);
  std::vector<float> train_logits(size_t(n * V));
  const StepStats s = train_forward(params, acts, tokens.data(), o, train_logits.data());

  KVCache cache(c, n + 1);
  ForwardOptions fo;
  fo.precision = Precision::f32;
  fo.all_logits = true;
  fo.attention = AttentionImpl::naive;
  Tensor logits, hidden;
  forward(*model, cache, tokens.data(), n, fo, &logits, &hidden);
  const testing::Diff d = testing::diff(train_logits.data(), logits.as<float>(), n * V);
  EXPECT_LE(d.max_abs_diff, 1e-4 * d.max_abs_ref) << dir;
  EXPECT_GT(d.max_abs_ref, 1e-2);
  EXPECT_NEAR(s.main_loss, mean_ce(logits.as<float>(), n, V, tokens.data() + 1), 1e-4);
  if (depth == 0) return;
  // MTP module 0 at positions 0..n-2: hidden of position i, token i+1, predicting token i+2.
  Tensor mtp_logits;
  mtp_forward(*model, 0, cache, hidden.as<float>(), tokens.data() + 1, n - 1, fo, &mtp_logits);
  EXPECT_NEAR(s.mtp_loss[0], mean_ce(mtp_logits.as<float>(), n - 1, V, tokens.data() + 2), 1e-4);
  (void)H;
}

TEST(TrainGradInference, TrainingForwardMatchesInferenceBf16WithMtp) {
  testing::TempDir dir("train_vs_infer");
  testing::write_tiny_checkpoint(testing::tiny_v3_config(), dir.path(), 11, DType::BF16, false);
  check_against_inference(dir.path());
}

TEST(TrainGradInference, TrainingForwardMatchesInferenceFp8AndV2) {
  testing::TempDir dir("train_vs_infer_fp8");
  testing::write_tiny_checkpoint(testing::tiny_v3_config(), dir.sub("fp8"), 12, DType::BF16, true);
  check_against_inference(dir.sub("fp8"));
  testing::write_tiny_checkpoint(testing::tiny_v2_config(), dir.sub("v2"), 13, DType::F32, false);
  check_against_inference(dir.sub("v2"));
}

TEST(TrainGradInference, RouterSelectionMatchesInference) {
  for (ModelConfig c : {testing::tiny_v3_config(), testing::tiny_v2_config()}) {
    const int64_t n = 64, E = c.n_routed_experts, K = c.num_experts_per_tok;
    std::vector<float> logits(static_cast<size_t>(n * E)), bias(static_cast<size_t>(E));
    std::vector<float> scores(static_cast<size_t>(n * E)), w(static_cast<size_t>(n * K)), w_ref(w);
    std::mt19937 rng(14);
    std::normal_distribution<float> dist(0.0f, 1.5f);
    for (float& v : logits) v = dist(rng);
    for (float& v : bias) v = 0.05f * dist(rng);
    std::vector<int32_t> idx(static_cast<size_t>(n * K)), idx_ref(idx);
    const float* b = c.topk_method == TopkMethod::noaux_tc ? bias.data() : nullptr;
    route_tokens(c, logits.data(), b, n, idx_ref.data(), w_ref.data());
    router_scores_forward(c, logits.data(), n, scores.data());
    route_select(c, scores.data(), b, n, idx.data());
    route_weights_forward(c, scores.data(), idx.data(), n, w.data());
    EXPECT_EQ(idx, idx_ref);
    EXPECT_EQ(w, w_ref);
  }
}

// ---- checkpoints ----

TEST(TrainGradCheckpoint, SaveLoadRoundTripAndInferenceLoads) {
  testing::TempDir dir("train_ckpt");
  ModelConfig c = testing::tiny_v3_config();
  TrainParams<float> params(c);
  randomize(params, 15, 0.05);
  save_params(params, dir.sub("f32"), DType::F32, size_t(1) << 20);  // several shards
  TrainParams<float> back = load_train_params<float>(dir.sub("f32"));
  ASSERT_EQ(back.size(), params.size());
  EXPECT_EQ(std::memcmp(back.data(), params.data(), size_t(params.size()) * sizeof(float)), 0);
  // The MTP copies of the embedding and head are written, and inference reads them.
  const TensorStore store = TensorStore::open_dir(dir.sub("f32"));
  const std::string mtp = cat("model.layers.", c.num_hidden_layers, ".");
  ASSERT_TRUE(store.has(mtp + "embed_tokens.weight"));
  EXPECT_EQ(std::memcmp(store.get(mtp + "shared_head.head.weight").data, params.get("lm_head.weight"),
                        size_t(c.vocab_size * c.hidden_size) * sizeof(float)),
            0);
  check_against_inference(dir.sub("f32"));

  save_params(params, dir.sub("bf16"), DType::BF16);
  TrainParams<float> rounded = load_train_params<float>(dir.sub("bf16"));
  for (const ParamInfo& info : params.layout().tensors) {
    const bool exact = info.role == TensorRole::router_bias;  // written in F32 whatever the dtype
    for (int64_t i = info.offset; i < info.offset + info.numel; i += 13)
      EXPECT_EQ(rounded.data()[i], exact ? params.data()[i] : bf16_to_f32(f32_to_bf16(params.data()[i]))) << info.name;
  }
  EXPECT_EQ(store.get(cat("model.layers.1.mlp.gate.e_score_correction_bias")).dtype, DType::F32);
}

TEST(TrainGradCheckpoint, LoadRejectsMismatchedCheckpoint) {
  testing::TempDir dir("train_ckpt_bad");
  testing::write_tiny_checkpoint(testing::tiny_v3_config(), dir.path(), 16, DType::BF16, false);
  ModelConfig other = testing::tiny_v3_config();
  other.hidden_size = 128;
  TrainParams<float> params(other);
  EXPECT_THROW(load_params(params, dir.path()), Error);
}

// ---- determinism, activations ----

TEST(TrainGradDeterminism, StepIsBitReproducible) {
  const ModelConfig c = testing::tiny_v3_config();
  TrainParams<float> params(c);
  randomize(params, 17, 0.02);
  TrainOptions o;
  o.moe.balance = BalanceLoss::sequence;
  TrainActivations<float> acts(c, 2, 16, 1);
  const std::vector<int32_t> tokens = random_tokens(2 * 17, c.vocab_size, 18);
  TrainParams<float> g1(params.layout_ptr()), g2(params.layout_ptr());
  const StepStats a = train_forward_backward(params, g1, acts, tokens.data(), o);
  const StepStats b = train_forward_backward(params, g2, acts, tokens.data(), o);
  EXPECT_EQ(a.loss, b.loss);
  EXPECT_EQ(std::memcmp(g1.data(), g2.data(), size_t(g1.size()) * sizeof(float)), 0);
  EXPECT_EQ(a.expert_load, b.expert_load);
  // Accumulation: a second step into g1 doubles it (up to the rounding of the sums: 1e-5 of the largest).
  train_forward_backward(params, g1, acts, tokens.data(), o);
  float largest = 0;
  for (int64_t i = 0; i < g2.size(); ++i) largest = std::max(largest, std::fabs(g2.data()[i]));
  for (int64_t i = 0; i < g1.size(); ++i) ASSERT_NEAR(g1.data()[i], 2 * g2.data()[i], 1e-5f * largest) << i;
}

// A pipeline's parts (each with its own activations and gradient arena, as on its own rank) give the
// whole step's loss and, summed, its gradients bit for bit: every parameter belongs to one part, and the
// MTP embedding rows the last part hands the first are added where one process adds them.
TEST(TrainGradParts, PipelinePartsEqualTheWholeStep) {
  ModelConfig c = testing::tiny_v3_config();
  c.num_hidden_layers = 4;
  c.num_nextn_predict_layers = 2;
  TrainParams<float> params(c);
  randomize(params, 23, 0.02);
  TrainOptions o;
  o.moe.balance = BalanceLoss::sequence;
  o.moe.balance_alpha = 0.01;
  const int64_t B = 2, S = 12, H = c.hidden_size, depth = 2;
  const std::vector<int32_t> tokens = random_tokens(B * (S + 1), c.vocab_size, 24);
  TrainActivations<float> whole_acts(c, B, S, depth);
  TrainParams<float> whole(params.layout_ptr());
  const StepStats expected = train_forward_backward(params, whole, whole_acts, tokens.data(), o);

  for (const std::vector<int64_t>& cuts : {std::vector<int64_t>{0, 2, 4}, std::vector<int64_t>{0, 1, 3, 4}}) {
    const size_t n = cuts.size() - 1;
    std::vector<std::unique_ptr<TrainActivations<float>>> acts;
    std::vector<TrainParams<float>> grads;
    for (size_t i = 0; i < n; ++i) {
      acts.push_back(std::make_unique<TrainActivations<float>>(c, B, S, depth));
      grads.emplace_back(params.layout_ptr());
    }
    std::vector<float> x(size_t(B * S * H)), next(x.size());
    std::vector<float> demb(size_t(mtp_embedding_rows(B, S, depth) * H));
    double balance = 0;
    StepStats stats;
    std::vector<std::vector<int64_t>> loads;
    for (size_t i = 0; i < n; ++i) {
      const ModelPart part{cuts[i], cuts[i + 1]};
      stats = train_part_forward(params, grads[i], *acts[i], tokens.data(), o, part, x.data(), balance, next.data());
      balance = stats.balance_loss;
      loads.insert(loads.end(), stats.expert_load.begin(), stats.expert_load.end());
      std::swap(x, next);
    }
    for (size_t i = n; i-- > 0;) {
      const ModelPart part{cuts[i], cuts[i + 1]};
      train_part_backward(params, grads[i], *acts[i], o, part, x.data(), next.data(), demb.data());
      std::swap(x, next);
    }
    EXPECT_EQ(stats.loss, expected.loss);
    EXPECT_EQ(stats.main_loss, expected.main_loss);
    EXPECT_EQ(stats.mtp_loss, expected.mtp_loss);
    EXPECT_EQ(stats.balance_loss, expected.balance_loss);
    EXPECT_EQ(loads, expected.expert_load);
    TrainParams<float> sum(params.layout_ptr());
    for (const TrainParams<float>& g : grads)
      for (int64_t j = 0; j < sum.size(); ++j) sum.data()[j] = sum.data()[j] + g.data()[j];
    EXPECT_EQ(std::memcmp(sum.data(), whole.data(), size_t(sum.size()) * sizeof(float)), 0) << cuts.size() - 1
                                                                                            << " parts";
  }
}

// Packed documents: two conversations in one row give the losses and gradients of the two run as rows
// of their own (in double, to rounding): attention stays inside each, RoPE restarts, predictions across
// the boundary and unmarked targets do not count.
TEST(TrainGradDocuments, PackedDocumentsEqualSeparateSequences) {
  const ModelConfig c = testing::tiny_v3_config();
  TrainParams<double> params(c);
  randomize(params, 31, 0.3);
  const int64_t n = 6, m = 7, S = n + m - 1;
  const std::vector<int32_t> a = random_tokens(n, c.vocab_size, 32), b = random_tokens(m, c.vocab_size, 33);
  std::vector<int32_t> packed = a;
  packed.insert(packed.end(), b.begin(), b.end());
  for (const int64_t depth : {int64_t(0), int64_t(1)}) {
    TrainOptions o;
    o.mtp_depth = depth;
    TrainActivations<double> pa(c, 1, S, depth), aa(c, 1, n - 1, depth), ba(c, 1, m - 1, depth);
    pa.document_start.assign(size_t(n), 0);
    pa.document_start.resize(size_t(n + m), int32_t(n));
    pa.loss_mask.assign(size_t(n + m), 1);
    TrainParams<double> gp(params.layout_ptr()), ga(params.layout_ptr()), gb(params.layout_ptr());
    const StepStats sp = train_forward_backward(params, gp, pa, packed.data(), o);
    const StepStats sa = train_forward_backward(params, ga, aa, a.data(), o);
    const StepStats sb = train_forward_backward(params, gb, ba, b.data(), o);
    EXPECT_EQ(sp.tokens, (n - 1) + (m - 1));
    EXPECT_NEAR(sp.main_loss * double(sp.tokens), sa.main_loss * double(sa.tokens) + sb.main_loss * double(sb.tokens),
                1e-9);
    if (depth == 1) {  // MTP: n − 2 and m − 2 predictions
      EXPECT_NEAR(sp.mtp_loss[0] * double(n + m - 4), sa.mtp_loss[0] * double(n - 2) + sb.mtp_loss[0] * double(m - 2),
                  1e-9);
      continue;
    }
    // Means over the counted targets: packed = (cA·gA + cB·gB) / (cA + cB).
    double largest = 0;
    for (int64_t i = 0; i < gp.size(); ++i) largest = std::max(largest, std::fabs(gp.data()[i]));
    const double ca = double(sa.tokens), cb = double(sb.tokens);
    for (int64_t i = 0; i < gp.size(); ++i)
      ASSERT_NEAR(gp.data()[i], (ca * ga.data()[i] + cb * gb.data()[i]) / (ca + cb), 1e-9 * largest) << i;
  }
  // Unmarked targets do not count; a malformed document start is refused.
  TrainActivations<double> pa(c, 1, S, 0);
  pa.document_start.assign(size_t(n + m), 0);
  pa.loss_mask.assign(size_t(n + m), 0);
  pa.loss_mask[3] = pa.loss_mask[4] = 1;
  TrainOptions o;
  o.mtp_depth = 0;
  EXPECT_EQ(train_forward(params, pa, packed.data(), o).tokens, 2);
  pa.document_start[5] = 2;
  EXPECT_THROW(train_forward(params, pa, packed.data(), o), Error);
}

TEST(TrainGradDeterminism, RejectsBadInputs) {
  const ModelConfig c = model_grad_config();
  TrainParams<float> params(c);
  TrainOptions o;
  EXPECT_THROW(TrainActivations<float>(c, 1, 1, 1), Error);  // no position left for MTP
  EXPECT_THROW(TrainActivations<float>(c, 1, 4, 2), Error);  // depth beyond the config
  TrainActivations<float> acts(c, 1, 4, 1);
  std::vector<int32_t> tokens = {1, 2, 3, 4, int32_t(c.vocab_size)};
  EXPECT_THROW(train_forward(params, acts, tokens.data(), o), Error);
  o.mtp_depth = 0;
  tokens.back() = 0;
  EXPECT_THROW(train_forward(params, acts, tokens.data(), o), Error);  // activations sized for depth 1
}

TEST(TrainGradPresets, PresetsAreValidConfigs) {
  for (const std::string& name : train_preset_names()) {
    const TrainPreset p = train_preset(name);
    const ModelConfig parsed = parse_model_config(model_config_to_json(p.config), name);
    EXPECT_EQ(parsed.hidden_size, p.config.hidden_size);
    EXPECT_GT(p.seq_len, 0);
    EXPECT_EQ(p.batch_size, 8);
  }
  EXPECT_EQ(train_preset("tiny").config.vocab_size, 4096);
  EXPECT_EQ(train_preset("small").config.num_experts_per_tok, 6);
  EXPECT_THROW(train_preset("huge"), Error);
}

}  // namespace
}  // namespace dsv3
