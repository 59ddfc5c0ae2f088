#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "model/kv_cache.h"
#include "model/mla.h"
#include "model/model.h"
#include "model/rope.h"
#include "test_support.h"

namespace dsv3 {
namespace {

using Vec = std::vector<double>;

Vec matvec(const LinearWeight& w, const Vec& x) {
  Vec y(size_t(w.rows), 0.0);
  for (int64_t r = 0; r < w.rows; ++r)
    for (int64_t c = 0; c < w.cols; ++c) y[size_t(r)] += double(w.at(r, c)) * x[size_t(c)];
  return y;
}

Vec rms_norm(const Vec& x, const Tensor& weight, double eps) {
  double ms = 0;
  for (double v : x) ms += v * v;
  const double inv = 1.0 / std::sqrt(ms / double(x.size()) + eps);
  Vec y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * weight.as<float>()[i];
  return y;
}

// Interleaved-pair rotation in double (angles formed in f32 as the references do).
void rotate(double* x, const RopeFrequencies& r, int64_t pos) {
  for (int64_t i = 0; i < r.dim / 2; ++i) {
    const double a = double(float(pos) * r.inv_freq[size_t(i)]);
    const double c = std::cos(a) * r.cos_sin_scale, s = std::sin(a) * r.cos_sin_scale;
    const double x0 = x[2 * i], x1 = x[2 * i + 1];
    x[2 * i] = x0 * c - x1 * s;
    x[2 * i + 1] = x0 * s + x1 * c;
  }
}

// Textbook MLA in double, straight from SPEC.md §1 (naive form), over positions [0, T).
std::vector<Vec> reference_mla(const ModelConfig& cfg, const AttentionWeights& w, const RopeFrequencies& rope,
                               double scale, const std::vector<Vec>& xs) {
  const int64_t heads = cfg.num_attention_heads, nope = cfg.qk_nope_head_dim, rd = cfg.qk_rope_head_dim;
  const int64_t vd = cfg.v_head_dim, kvr = cfg.kv_lora_rank, qk = nope + rd;
  const int64_t T = int64_t(xs.size());
  std::vector<Vec> q(static_cast<size_t>(T)), k(static_cast<size_t>(T)), v(static_cast<size_t>(T));  // per position: [heads·qk], [heads·qk], [heads·v]
  for (int64_t p = 0; p < T; ++p) {
    q[size_t(p)] = w.q_lora ? matvec(w.q_b_proj, rms_norm(matvec(w.q_a_proj, xs[size_t(p)]), w.q_a_layernorm,
                                                          cfg.rms_norm_eps))
                            : matvec(w.q_proj, xs[size_t(p)]);
    for (int64_t h = 0; h < heads; ++h) rotate(q[size_t(p)].data() + h * qk + nope, rope, p);
    const Vec kv = matvec(w.kv_a_proj_with_mqa, xs[size_t(p)]);
    const Vec c = rms_norm(Vec(kv.begin(), kv.begin() + kvr), w.kv_a_layernorm, cfg.rms_norm_eps);
    Vec k_rope(kv.begin() + kvr, kv.end());
    rotate(k_rope.data(), rope, p);
    const Vec kvb = matvec(w.kv_b_proj, c);
    k[size_t(p)].resize(size_t(heads * qk));
    v[size_t(p)].resize(size_t(heads * vd));
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < nope; ++i) k[size_t(p)][size_t(h * qk + i)] = kvb[size_t(h * (nope + vd) + i)];
      for (int64_t i = 0; i < rd; ++i) k[size_t(p)][size_t(h * qk + nope + i)] = k_rope[size_t(i)];
      for (int64_t i = 0; i < vd; ++i) v[size_t(p)][size_t(h * vd + i)] = kvb[size_t(h * (nope + vd) + nope + i)];
    }
  }
  std::vector<Vec> out(static_cast<size_t>(T));
  for (int64_t p = 0; p < T; ++p) {
    Vec o(size_t(heads * vd), 0.0);
    for (int64_t h = 0; h < heads; ++h) {
      Vec s(size_t(p + 1));
      double mx = -INFINITY, sum = 0;
      for (int64_t j = 0; j <= p; ++j) {
        double d = 0;
        for (int64_t i = 0; i < qk; ++i) d += q[size_t(p)][size_t(h * qk + i)] * k[size_t(j)][size_t(h * qk + i)];
        s[size_t(j)] = d * scale;
        mx = std::max(mx, s[size_t(j)]);
      }
      for (double& e : s) sum += e = std::exp(e - mx);
      for (int64_t j = 0; j <= p; ++j)
        for (int64_t i = 0; i < vd; ++i) o[size_t(h * vd + i)] += s[size_t(j)] / sum * v[size_t(j)][size_t(h * vd + i)];
    }
    out[size_t(p)] = matvec(w.o_proj, o);
  }
  return out;
}

// Runs positions [0, T) as a prefill chunk of `prefill` tokens followed by single-token decode steps.
std::vector<float> run_mla(const Model& m, AttentionImpl impl, Precision prec, const std::vector<float>& x,
                           int64_t T, int64_t prefill, KVCache& cache) {
  const ModelConfig& c = m.config;
  const int64_t H = c.hidden_size, half = c.qk_rope_head_dim / 2;
  std::vector<float> out(size_t(T * H));
  std::vector<float> cos(size_t(T * half)), sin(size_t(T * half));
  for (int64_t pos = 0; pos < T;) {
    const int64_t n = pos == 0 ? prefill : 1;
    rope_tables(m.weights.rope, pos, n, cos.data(), sin.data());
    const ChunkSegment segment{&cache, pos, n, 0};
    ChunkContext ctx;
    ctx.segments = &segment;
    ctx.num_segments = 1;
    ctx.n = n;
    ctx.rope_cos = cos.data();
    ctx.rope_sin = sin.data();
    ctx.softmax_scale = m.weights.softmax_scale;
    ctx.precision = prec;
    ctx.attention = impl;
    mla_forward(c, m.weights.layers[0].attn, ctx, 0, cache.scratch(), x.data() + pos * H, out.data() + pos * H);
    pos += n;
  }
  return out;
}

void check_mla(ModelConfig config, bool fp8, DType dtype) {
  testing::TempDir dir("mla");
  testing::write_tiny_checkpoint(config, dir.path(), 5, dtype, fp8, 0.15);
  auto model = load_model(dir.path());
  const ModelConfig& c = model->config;
  const int64_t H = c.hidden_size, T = 9, prefill = 6;
  std::mt19937 rng(9);
  std::normal_distribution<float> normal;
  std::vector<float> x(size_t(T * H));
  for (float& v : x) v = normal(rng);

  KVCache cache_abs(c, 16), cache_naive(c, 16);
  const std::vector<float> absorbed = run_mla(*model, AttentionImpl::absorbed, Precision::f32, x, T, prefill, cache_abs);
  const std::vector<float> naive = run_mla(*model, AttentionImpl::naive, Precision::f32, x, T, prefill, cache_naive);

  std::vector<Vec> xs(static_cast<size_t>(T));
  for (int64_t p = 0; p < T; ++p) xs[size_t(p)] = Vec(x.begin() + p * H, x.begin() + (p + 1) * H);
  const std::vector<Vec> ref = reference_mla(c, model->weights.layers[0].attn, model->weights.rope,
                                             model->weights.softmax_scale, xs);
  std::vector<float> ref_flat;
  for (const Vec& r : ref) ref_flat.insert(ref_flat.end(), r.begin(), r.end());

  // The two forms differ only in the order of f32 operations in the attention core (dot products of
  // <= 32 terms, sums over <= 9 positions): ~1e-6 relative, so 1e-5 of the output scale is tight.
  const testing::Diff an = testing::diff(absorbed.data(), naive.data(), T * H);
  EXPECT_LE(an.max_abs_diff, 1e-5 * an.max_abs_ref) << "absorbed vs naive";
  EXPECT_GT(an.max_abs_ref, 1e-3) << "outputs should not be trivially small";
  // Against the double-precision textbook version: f32 projections (K <= 144) add ~1e-5 relative.
  for (const auto* got : {&absorbed, &naive}) {
    const testing::Diff d = testing::diff(got->data(), ref_flat.data(), T * H);
    EXPECT_LE(d.max_abs_diff, 1e-4 * d.max_abs_ref) << (got == &absorbed ? "absorbed" : "naive") << " vs reference";
  }
  // Both paths cache identical latent rows.
  for (int64_t p = 0; p < T; ++p)
    for (int64_t i = 0; i < cache_abs.row_size(); ++i)
      ASSERT_EQ(cache_abs.row(0, p)[i], cache_naive.row(0, p)[i]) << "position " << p;

  // BF16 activations: the naive path rounds c_kv to bf16 inside kv_b_proj, the absorbed one does not.
  KVCache cache_abs16(c, 16), cache_naive16(c, 16);
  const std::vector<float> a16 = run_mla(*model, AttentionImpl::absorbed, Precision::bf16, x, T, prefill, cache_abs16);
  const std::vector<float> n16 = run_mla(*model, AttentionImpl::naive, Precision::bf16, x, T, prefill, cache_naive16);
  const testing::Diff d16 = testing::diff(a16.data(), n16.data(), T * H);
  EXPECT_LE(d16.max_abs_diff, 2e-2 * d16.max_abs_ref);
}

TEST(Mla, AbsorbedEqualsNaiveQLoraBf16) { check_mla(testing::tiny_v3_config(), false, DType::BF16); }
TEST(Mla, AbsorbedEqualsNaiveQLoraFp8) { check_mla(testing::tiny_v3_config(), true, DType::BF16); }
TEST(Mla, AbsorbedEqualsNaivePlainQBf16) { check_mla(testing::tiny_v2_config(), false, DType::BF16); }
TEST(Mla, AbsorbedEqualsNaivePlainQFp8) { check_mla(testing::tiny_v2_config(), true, DType::BF16); }
TEST(Mla, AbsorbedEqualsNaiveF32Weights) { check_mla(testing::tiny_v3_config(), false, DType::F32); }

TEST(Mla, PrefillEqualsTokenByToken) {
  testing::TempDir dir("mla_steps");
  testing::write_tiny_checkpoint(testing::tiny_v3_config(), dir.path(), 8, DType::BF16, false, 0.15);
  auto model = load_model(dir.path());
  const int64_t H = model->config.hidden_size, T = 7;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::vector<float> x(size_t(T * H));
  for (float& v : x) v = normal(rng);
  KVCache a(model->config, T), b(model->config, T);
  const std::vector<float> whole = run_mla(*model, AttentionImpl::absorbed, Precision::f32, x, T, T, a);
  const std::vector<float> steps = run_mla(*model, AttentionImpl::absorbed, Precision::f32, x, T, 1, b);
  const testing::Diff d = testing::diff(whole.data(), steps.data(), T * H);
  EXPECT_LE(d.max_abs_diff, 1e-5 * d.max_abs_ref);
}

TEST(Mla, RejectsPositionsBeyondCapacity) {
  testing::TempDir dir("mla_cap");
  testing::write_tiny_checkpoint(testing::tiny_v3_config(), dir.path(), 8, DType::BF16, false);
  auto model = load_model(dir.path());
  KVCache cache(model->config, 2);
  std::vector<float> x(size_t(3 * model->config.hidden_size)), out(x.size());
  EXPECT_THROW(run_mla(*model, AttentionImpl::absorbed, Precision::f32, x, 3, 3, cache), Error);
}

}  // namespace
}  // namespace dsv3
