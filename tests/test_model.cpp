#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <vector>

#include "core/error.h"
#include "model/model.h"
#include "model/presets.h"
#include "model/random_init.h"
#include "model/stats.h"
#include "test_support.h"

namespace dsv3 {
namespace {

std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, int32_t(vocab - 1));
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int32_t& v : t) v = dist(rng);
  return t;
}

ForwardOptions exact(bool all_logits, int64_t chunk = 256, AttentionImpl impl = AttentionImpl::absorbed) {
  ForwardOptions o;
  o.precision = Precision::f32;
  o.all_logits = all_logits;
  o.prefill_chunk = chunk;
  o.attention = impl;
  return o;
}

// Logits of a whole prompt in one call (all positions).
Tensor prompt_logits(const Model& m, const std::vector<int32_t>& tokens, const ForwardOptions& o) {
  KVCache cache(m.config, int64_t(tokens.size()) + 4);
  Tensor logits;
  forward(m, cache, tokens.data(), int64_t(tokens.size()), o, &logits);
  EXPECT_EQ(cache.size(), int64_t(tokens.size()));
  return logits;
}

// Logits of a prompt decoded one token at a time.
Tensor decode_logits(const Model& m, const std::vector<int32_t>& tokens) {
  const int64_t n = int64_t(tokens.size()), V = m.config.vocab_size;
  KVCache cache(m.config, n);
  Tensor all(DType::F32, {n, V}), step;
  for (int64_t i = 0; i < n; ++i) {
    forward(m, cache, &tokens[size_t(i)], 1, exact(false), &step);
    EXPECT_EQ(step.dim(0), 1);
    std::memcpy(all.as<float>() + i * V, step.as<float>(), size_t(V) * sizeof(float));
  }
  return all;
}

// Logits differ only by f32 rounding in differently shaped kernels (GEMM vs GEMV, chunk splits): the
// residual stream passes ~10 projections with K <= 160, so 1e-4 of the logit scale is a safe bound,
// while any real error (mask, position, cache) changes logits by O(1).
void expect_close(const Tensor& a, const Tensor& b, double rel = 1e-4) {
  ASSERT_EQ(a.shape(), b.shape());
  const testing::Diff d = testing::diff(a.as<float>(), b.as<float>(), a.numel());
  EXPECT_LE(d.max_abs_diff, rel * d.max_abs_ref);
  EXPECT_GT(d.max_abs_ref, 1e-2);
}

class ModelTest : public ::testing::Test {
 protected:
  void SetUp() override { testing::write_tiny_checkpoint(testing::tiny_v3_config(), dir_.path(), 3, DType::BF16, false); }
  testing::TempDir dir_{"model"};
};

TEST_F(ModelTest, PromptEqualsTokenByTokenDecode) {
  auto m = load_model(dir_.path());
  const std::vector<int32_t> tokens = random_tokens(11, m->config.vocab_size, 1);
  expect_close(prompt_logits(*m, tokens, exact(true)), decode_logits(*m, tokens));
}

// 40 tokens: the prompt goes through the GEMM prefill attention (chunks of 32+ tokens), decode through
// the absorbed latent attention, and the naive reference through per-query loops.
TEST_F(ModelTest, GemmPrefillEqualsDecodeAndNaive) {
  auto m = load_model(dir_.path());
  const std::vector<int32_t> tokens = random_tokens(40, m->config.vocab_size, 5);
  const Tensor prefill = prompt_logits(*m, tokens, exact(true, 0));
  expect_close(prefill, decode_logits(*m, tokens));
  expect_close(prefill, prompt_logits(*m, tokens, exact(true, 0, AttentionImpl::naive)));
  // A second chunk of 33 after 7 cached positions: the GEMM path with an offset causal mask.
  KVCache cache(m->config, int64_t(tokens.size()));
  ForwardOptions o = exact(true, 0);
  Tensor head, tail;
  forward(*m, cache, tokens.data(), 7, o, &head);
  forward(*m, cache, tokens.data() + 7, 33, o, &tail);
  const int64_t vocab = m->config.vocab_size;
  const testing::Diff d = testing::diff(tail.as<float>(), prefill.as<float>() + 7 * vocab, 33 * vocab);
  EXPECT_LE(d.max_abs_diff, 1e-4 * d.max_abs_ref);
}

// One batched step over four sequences at different points — decode (1 token), speculative verification
// (2), a prompt chunk long enough for the GEMM attention (33) and a first token — equals running each
// sequence alone: logits of every position or of the last, hidden states, and the cache rows written.
// Sequences that saw each other's cache, or rows at the wrong position, would change logits by O(1).
TEST_F(ModelTest, BatchedStepEqualsEachSequenceAlone) {
  auto m = load_model(dir_.path());
  const ModelConfig& c = m->config;
  const int64_t V = c.vocab_size, H = c.hidden_size;
  const int64_t history[] = {5, 9, 4, 0}, step[] = {1, 2, 33, 1};
  for (const bool all_logits : {true, false}) {
    const ForwardOptions o = exact(all_logits, 0);
    std::vector<std::vector<int32_t>> tokens;
    std::vector<std::unique_ptr<KVCache>> batched, alone;
    std::vector<BatchItem> items;
    std::vector<std::vector<float>> logits(4), hidden(4);
    for (int i = 0; i < 4; ++i) {
      tokens.push_back(random_tokens(history[i] + step[i], V, 20 + uint32_t(i)));
      batched.push_back(std::make_unique<KVCache>(c, 64));
      alone.push_back(std::make_unique<KVCache>(c, 64));
      if (history[i] > 0) {
        forward(*m, *batched.back(), tokens.back().data(), history[i], o, nullptr);
        forward(*m, *alone.back(), tokens.back().data(), history[i], o, nullptr);
      }
      logits[size_t(i)].resize(size_t((all_logits ? step[i] : 1) * V));
      hidden[size_t(i)].resize(size_t(step[i] * H));
      items.push_back(BatchItem{batched.back().get(), tokens.back().data() + history[i], step[i],
                                logits[size_t(i)].data(), hidden[size_t(i)].data()});
    }
    Scratch scratch;
    forward_batch(*m, items.data(), int64_t(items.size()), o, scratch);
    for (int i = 0; i < 4; ++i) {
      SCOPED_TRACE(::testing::Message() << "sequence " << i << (all_logits ? ", all logits" : ", last logits"));
      Tensor want_logits, want_hidden;
      forward(*m, *alone[size_t(i)], tokens[size_t(i)].data() + history[i], step[i], o, &want_logits, &want_hidden);
      ASSERT_EQ(batched[size_t(i)]->size(), history[i] + step[i]);
      Tensor got(DType::F32, want_logits.shape());
      std::memcpy(got.as<float>(), logits[size_t(i)].data(), size_t(got.numel()) * sizeof(float));
      expect_close(got, want_logits);
      const testing::Diff dh = testing::diff(hidden[size_t(i)].data(), want_hidden.as<float>(), want_hidden.numel());
      EXPECT_LE(dh.max_abs_diff, 1e-4 * dh.max_abs_ref);
      for (int64_t l = 0; l < c.num_hidden_layers; ++l)
        for (int64_t p = 0; p < history[i] + step[i]; ++p) {
          const testing::Diff dr = testing::diff(batched[size_t(i)]->row(l, p), alone[size_t(i)]->row(l, p),
                                                 batched[size_t(i)]->row_size());
          ASSERT_LE(dr.max_abs_diff, 1e-4 * dr.max_abs_ref + 1e-6) << "layer " << l << " position " << p;
        }
    }
  }
}

TEST_F(ModelTest, BatchedStepRejectsSharedCachesAndOverflow) {
  auto m = load_model(dir_.path());
  KVCache cache(m->config, 4);
  const int32_t tokens[5] = {1, 2, 3, 4, 5};
  Scratch scratch;
  BatchItem twice[2] = {{&cache, tokens, 1, nullptr, nullptr}, {&cache, tokens, 1, nullptr, nullptr}};
  EXPECT_THROW(forward_batch(*m, twice, 2, exact(false), scratch), Error);
  BatchItem too_long{&cache, tokens, 5, nullptr, nullptr};
  EXPECT_THROW(forward_batch(*m, &too_long, 1, exact(false), scratch), Error);
  EXPECT_EQ(cache.size(), 0);
}

TEST_F(ModelTest, ChunkedPrefillEqualsUnchunked) {
  auto m = load_model(dir_.path());
  const std::vector<int32_t> tokens = random_tokens(10, m->config.vocab_size, 2);
  expect_close(prompt_logits(*m, tokens, exact(true, 3)), prompt_logits(*m, tokens, exact(true, 0)));
  // Last-position logits equal the last row of all logits.
  const Tensor all = prompt_logits(*m, tokens, exact(true, 4));
  const Tensor last = prompt_logits(*m, tokens, exact(false, 4));
  ASSERT_EQ(last.dim(0), 1);
  const int64_t V = m->config.vocab_size;
  const testing::Diff d = testing::diff(last.as<float>(), all.as<float>() + 9 * V, V);
  EXPECT_EQ(d.max_abs_diff, 0.0);
}

TEST_F(ModelTest, AbsorbedEqualsNaiveEndToEnd) {
  auto m = load_model(dir_.path());
  const std::vector<int32_t> tokens = random_tokens(9, m->config.vocab_size, 3);
  expect_close(prompt_logits(*m, tokens, exact(true, 4, AttentionImpl::absorbed)),
               prompt_logits(*m, tokens, exact(true, 4, AttentionImpl::naive)));
}

TEST_F(ModelTest, Bf16PrecisionStaysClose) {
  auto m = load_model(dir_.path());
  const std::vector<int32_t> tokens = random_tokens(6, m->config.vocab_size, 4);
  ForwardOptions bf16 = exact(true);
  bf16.precision = Precision::bf16;
  // bf16 activations (8-bit mantissa) in every projection: a few 1e-3 relative.
  expect_close(prompt_logits(*m, tokens, bf16), prompt_logits(*m, tokens, exact(true)), 3e-2);
}

TEST_F(ModelTest, TruncateRewindsTheCache) {
  auto m = load_model(dir_.path());
  const std::vector<int32_t> tokens = random_tokens(8, m->config.vocab_size, 5);
  KVCache cache(m->config, 8);
  Tensor a, b;
  forward(*m, cache, tokens.data(), 8, exact(false), &a);
  cache.truncate(5);
  EXPECT_EQ(cache.size(), 5);
  forward(*m, cache, tokens.data() + 5, 3, exact(false), &b);
  expect_close(b, a);
  EXPECT_THROW(cache.truncate(9), Error);
  std::vector<int32_t> more(1, 0);
  EXPECT_THROW(forward(*m, cache, more.data(), 1, exact(false), &b), Error);  // cache full
}

TEST_F(ModelTest, MtpForwardRunsAndIsDeterministic) {
  auto m = load_model(dir_.path());
  ASSERT_EQ(m->weights.mtp.size(), 1u);
  const int64_t n = 7, H = m->config.hidden_size, V = m->config.vocab_size;
  const std::vector<int32_t> tokens = random_tokens(n + 1, V, 6);
  auto run = [&](int64_t chunk, bool step_by_step) {
    KVCache cache(m->config, n + 1);
    Tensor hidden, logits;
    forward(*m, cache, tokens.data(), n, exact(false, chunk), &logits, &hidden);
    EXPECT_EQ(hidden.shape(), (Shape{n, H}));
    Tensor mtp_logits(DType::F32, {n, V}), step, hidden_out;
    if (step_by_step) {
      for (int64_t i = 0; i < n; ++i) {
        mtp_forward(*m, 0, cache, hidden.as<float>() + i * H, tokens.data() + i + 1, 1, exact(false), &step, &hidden_out);
        std::memcpy(mtp_logits.as<float>() + i * V, step.as<float>(), size_t(V) * sizeof(float));
      }
    } else {
      mtp_forward(*m, 0, cache, hidden.as<float>(), tokens.data() + 1, n, exact(true, chunk), &mtp_logits, &hidden_out);
      EXPECT_EQ(hidden_out.shape(), (Shape{n, H}));
    }
    EXPECT_EQ(cache.mtp_size(0), n);
    return mtp_logits;
  };
  const Tensor a = run(256, false), b = run(256, false);
  ASSERT_EQ(std::memcmp(a.data(), b.data(), a.nbytes()), 0) << "MTP forward must be bit-for-bit deterministic";
  expect_close(run(3, false), a);  // chunked
  expect_close(run(256, true), a);  // one position at a time
  KVCache other(m->config, 4);
  EXPECT_THROW(mtp_forward(*m, 1, other, nullptr, nullptr, 1, exact(false), nullptr), Error);  // no module 1
}

TEST(ModelFp8, Fp8CheckpointMatchesDequantizedTwin) {
  testing::TempDir dir("model_fp8");
  const std::string fp8 = dir.sub("fp8"), twin = dir.sub("twin");
  testing::write_tiny_checkpoint(testing::tiny_v3_config(), fp8, 4, DType::BF16, true);
  testing::write_dequantized_twin(fp8, twin);
  auto a = load_model(fp8);
  auto b = load_model(twin);
  EXPECT_EQ(a->weights.layers[0].attn.q_b_proj.dtype, DType::F8_E4M3);
  EXPECT_EQ(b->weights.layers[0].attn.q_b_proj.dtype, DType::F32);
  const std::vector<int32_t> tokens = random_tokens(8, a->config.vocab_size, 7);
  // Same dequantized weights; only kernel summation order differs.
  expect_close(prompt_logits(*a, tokens, exact(true)), prompt_logits(*b, tokens, exact(true)));
}

TEST(ModelV2, V2LiteShapedConfigRuns) {
  testing::TempDir dir("model_v2");
  testing::write_tiny_checkpoint(testing::tiny_v2_config(), dir.path(), 5, DType::BF16, false);
  auto m = load_model(dir.path());
  EXPECT_FALSE(m->weights.layers[0].attn.q_lora);
  EXPECT_FALSE(m->weights.layers[0].is_moe);
  EXPECT_TRUE(m->weights.layers[1].is_moe);
  EXPECT_TRUE(m->weights.layers[1].moe.correction_bias.empty());
  EXPECT_TRUE(m->weights.mtp.empty());
  const std::vector<int32_t> tokens = random_tokens(7, m->config.vocab_size, 8);
  expect_close(prompt_logits(*m, tokens, exact(true, 3)), decode_logits(*m, tokens));
  expect_close(prompt_logits(*m, tokens, exact(true, 0, AttentionImpl::naive)), decode_logits(*m, tokens));
}

// ---- validation errors name the tensor -------------------------------------------------------

// Rewrites the checkpoint in `src` into `dst`, letting `edit` drop or replace tensors.
void rewrite(const std::string& src, const std::string& dst,
             const std::function<bool(const std::string&, const TensorView&, SafetensorsWriter&)>& edit) {
  const TensorStore store = TensorStore::open_dir(src);
  SafetensorsWriter w;
  for (const std::string& name : store.names()) {
    const TensorView v = store.get(name);
    if (!edit(name, v, w)) w.add(name, v.dtype, v.shape, v.data);
  }
  std::filesystem::create_directories(dst);
  w.write_file(dst + "/model.safetensors");
  std::filesystem::copy_file(src + "/config.json", dst + "/config.json");
}

std::string load_error(const std::string& dir) {
  try {
    load_model(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ModelErrors, MissingWrongShapeWrongDtypeAndMissingScaleNameTheTensor) {
  testing::TempDir dir("model_err");
  const std::string good = dir.sub("good");
  testing::write_tiny_checkpoint(testing::tiny_v3_config(), good, 1, DType::BF16, true);
  ASSERT_EQ(load_error(good), "");

  const std::string victim = "model.layers.1.mlp.experts.3.up_proj.weight";
  rewrite(good, dir.sub("missing"), [&](const std::string& n, const TensorView&, SafetensorsWriter&) { return n == victim; });
  std::string err = load_error(dir.sub("missing"));
  EXPECT_NE(err.find(victim), std::string::npos) << err;

  const std::string norm = "model.layers.2.post_attention_layernorm.weight";
  Tensor wrong_shape(DType::BF16, {7});
  rewrite(good, dir.sub("shape"), [&](const std::string& n, const TensorView&, SafetensorsWriter& w) {
    if (n != norm) return false;
    w.add(n, std::move(wrong_shape));
    return true;
  });
  err = load_error(dir.sub("shape"));
  EXPECT_NE(err.find(norm), std::string::npos) << err;
  EXPECT_NE(err.find("model.safetensors"), std::string::npos) << err;

  Tensor wrong_dtype(DType::I32, {testing::tiny_v3_config().hidden_size});
  rewrite(good, dir.sub("dtype"), [&](const std::string& n, const TensorView&, SafetensorsWriter& w) {
    if (n != norm) return false;
    w.add(n, std::move(wrong_dtype));
    return true;
  });
  err = load_error(dir.sub("dtype"));
  EXPECT_NE(err.find(norm), std::string::npos) << err;
  EXPECT_NE(err.find("I32"), std::string::npos) << err;

  const std::string scale = "model.layers.0.self_attn.o_proj.weight_scale_inv";
  rewrite(good, dir.sub("scale"), [&](const std::string& n, const TensorView&, SafetensorsWriter&) { return n == scale; });
  err = load_error(dir.sub("scale"));
  EXPECT_NE(err.find(scale), std::string::npos) << err;
}

TEST(ModelErrors, TokenOutsideVocabularyIsRejected) {
  testing::TempDir dir("model_tok");
  testing::write_tiny_checkpoint(testing::tiny_v3_config(), dir.path(), 1, DType::BF16, false);
  auto m = load_model(dir.path());
  KVCache cache(m->config, 4);
  Tensor logits;
  const int32_t bad = int32_t(m->config.vocab_size);
  EXPECT_THROW(forward(*m, cache, &bad, 1, exact(false), &logits), Error);
}

// ---- random init, presets, stats -----------------------------------------------------------------

TEST(ModelInit, DeterministicAndShardedCheckpointsAgree) {
  testing::TempDir dir("model_init");
  const ModelConfig c = testing::tiny_v3_config();
  testing::write_tiny_checkpoint(c, dir.sub("a"), 42, DType::BF16, false);
  testing::write_tiny_checkpoint(c, dir.sub("b"), 42, DType::BF16, false, 0.08, 200000);  // several shards
  EXPECT_TRUE(std::filesystem::exists(dir.sub("b") + "/model.safetensors.index.json"));
  const TensorStore a = TensorStore::open_dir(dir.sub("a")), b = TensorStore::open_dir(dir.sub("b"));
  ASSERT_EQ(a.names(), b.names());
  for (const std::string& name : a.names()) {
    const TensorView va = a.get(name), vb = b.get(name);
    ASSERT_EQ(va.nbytes(), vb.nbytes());
    ASSERT_EQ(std::memcmp(va.data, vb.data, va.nbytes()), 0) << name;
  }
  // MTP copies equal the main embedding/head; a different seed gives different values.
  const TensorView e = a.get("model.embed_tokens.weight"), e3 = a.get("model.layers.3.embed_tokens.weight");
  EXPECT_EQ(std::memcmp(e.data, e3.data, e.nbytes()), 0);
  testing::write_tiny_checkpoint(c, dir.sub("c"), 43, DType::BF16, false);
  const TensorStore cs = TensorStore::open_dir(dir.sub("c"));
  EXPECT_NE(std::memcmp(cs.get("lm_head.weight").data, a.get("lm_head.weight").data, e.nbytes()), 0);
}

TEST(ModelPresets, AllPresetsAreValidConfigs) {
  for (const std::string& name : preset_names()) {
    const ModelConfig c = preset_config(name);
    // Round trip through config.json validation.
    const ModelConfig parsed = parse_model_config(model_config_to_json(c), name);
    EXPECT_EQ(parsed.hidden_size, c.hidden_size) << name;
    EXPECT_EQ(parsed.q_lora_rank, c.q_lora_rank) << name;
  }
  EXPECT_THROW(preset_config("no-such-model"), Error);
  EXPECT_EQ(preset_config("v3-tiny").vocab_size, 129280);
  const ModelConfig v2 = preset_config("v2-lite-tiny");
  EXPECT_FALSE(v2.q_lora_rank.has_value());
  EXPECT_EQ(v2.scoring_func, ScoringFunc::softmax);
  EXPECT_EQ(v2.topk_method, TopkMethod::greedy);
  EXPECT_FALSE(v2.norm_topk_prob);
  EXPECT_DOUBLE_EQ(v2.rope_scaling.mscale_all_dim, 0.707);
  // The benchmark model: ~1.5e9 bytes of BF16 weights in the main model.
  const size_t bytes = weight_bytes(preset_config("v3-1.5g"), DType::BF16, false, false);
  EXPECT_GT(bytes, size_t(1.35e9));
  EXPECT_LT(bytes, size_t(1.65e9));
}

TEST(ModelStatsTest, DeepSeekV3PublishedNumbers) {
  const ModelStats s = model_stats(preset_config("deepseek-v3"));
  EXPECT_NEAR(double(s.total_params) / 1e9, 671.0, 0.5);  // "671B total"
  EXPECT_NEAR(double(s.active_params) / 1e9, 37.0, 0.5);  // "37B activated"
  EXPECT_NEAR(double(s.mtp_params) / 1e9, 14.0, 0.6);     // "14B MTP module" (685B checkpoint)
  EXPECT_EQ(s.kv_bytes_per_token(DType::BF16), 70272u);    // SPEC.md §1
  EXPECT_EQ(s.embedding_params, 129280LL * 7168);
  const ModelStats lite = model_stats(preset_config("deepseek-v2-lite"));
  EXPECT_NEAR(double(lite.total_params) / 1e9, 15.7, 0.1);  // "16B total"
  EXPECT_NEAR(double(lite.active_params) / 1e9, 2.4, 0.1);  // "2.4B activated"
  EXPECT_EQ(lite.mtp_params, 0);
}

TEST(ModelStatsTest, WeightBytesMatchAWrittenCheckpoint) {
  testing::TempDir dir("model_bytes");
  const ModelConfig c = testing::tiny_v3_config();
  for (bool fp8 : {false, true}) {
    const std::string path = dir.sub(fp8 ? "fp8" : "bf16");
    testing::write_tiny_checkpoint(c, path, 1, DType::BF16, fp8);
    const TensorStore store = TensorStore::open_dir(path);
    size_t bytes = 0;
    for (const std::string& name : store.names()) bytes += store.get(name).nbytes();
    EXPECT_EQ(bytes, weight_bytes(c, DType::BF16, fp8, true)) << (fp8 ? "fp8" : "bf16");
  }
}

// The v3-tiny preset with DeepSeek-V3's real vocabulary (129280) in FP8: init, load, prompt == decode.
TEST(SlowModelPreset, V3TinyFp8Runs) {
  testing::TempDir dir("model_v3tiny");
  RandomInitOptions o;
  o.fp8 = true;
  write_random_checkpoint(preset_config("v3-tiny"), dir.path(), 7, o);
  auto m = load_model(dir.path());
  EXPECT_EQ(m->config.vocab_size, 129280);
  const std::vector<int32_t> tokens = random_tokens(6, m->config.vocab_size, 9);
  expect_close(prompt_logits(*m, tokens, exact(true, 4)), decode_logits(*m, tokens));
}

}  // namespace
}  // namespace dsv3
