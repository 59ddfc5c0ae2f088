// Every training module's backward against central finite differences of its forward, in double
// (STYLE.md §6). Objective: L = Σ r ⊙ forward(...) for a fixed random r (plus the module's own loss
// terms), whose gradient the backward computes from dout = r.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "core/error.h"
#include "test_train_grad_support.h"
#include "train/block_train.h"
#include "train/loss_train.h"
#include "train/mla_train.h"
#include "train/mlp_train.h"
#include "train/moe_train.h"
#include "train/mtp_train.h"
#include "train/train_model.h"
#include "train/train_ops.h"

namespace dsv3 {
namespace {

using testing::check_gradient;
using testing::random_vector;
using testing::v3_grad_config;
using testing::weighted_sum;
using Vec = std::vector<double>;

// DeepSeek-V2-Lite-shaped: plain q_proj, softmax router, greedy top-k, no normalisation, 2 shared experts.
ModelConfig v2_grad_config() {
  ModelConfig c = v3_grad_config();
  c.model_type = "deepseek_v2";
  c.q_lora_rank.reset();
  c.n_shared_experts = 2;
  c.n_group = 1;
  c.topk_group = 1;
  c.scoring_func = ScoringFunc::softmax;
  c.topk_method = TopkMethod::greedy;
  c.norm_topk_prob = false;
  c.routed_scaling_factor = 1.0;
  c.rope_scaling.mscale = 0.707;
  c.rope_scaling.mscale_all_dim = 0.707;
  c.num_nextn_predict_layers = 0;
  return c;
}

// Random parameters with a decisive scale, a non-trivial correction bias, norms near 1.
void randomize(TrainParams<double>& p, uint32_t seed) {
  TrainInitOptions o;
  o.init_std = 0.3;
  init_random(p, seed, o);
  for (const ParamInfo& info : p.layout().tensors) {
    if (info.alias) continue;
    double* d = p.data() + info.offset;
    if (info.role == TensorRole::norm) {
      const Vec noise = random_vector(info.numel, seed + uint32_t(info.offset), 0.2);
      for (int64_t i = 0; i < info.numel; ++i) d[i] += noise[size_t(i)];
    } else if (info.role == TensorRole::router_bias) {
      const Vec noise = random_vector(info.numel, seed + 7, 0.05);
      for (int64_t i = 0; i < info.numel; ++i) d[i] = noise[size_t(i)];
    }
  }
}

// Checks every tensor whose name starts with `prefix` (aliases skipped).
void check_tensors(TrainParams<double>& params, const TrainParams<double>& grads, const std::string& prefix,
                   const std::function<double()>& objective, const std::function<bool()>& valid = nullptr,
                   testing::FdOptions o = {}) {
  int64_t tensors = 0;
  for (const ParamInfo& info : params.layout().tensors) {
    if (info.alias || info.name.rfind(prefix, 0) != 0 || !info.trainable()) continue;
    o.seed += 1;
    const testing::FdResult r = check_gradient(info.name, params.data() + info.offset, grads.data() + info.offset,
                                               info.numel, objective, o, valid);
    EXPECT_LE(r.skipped, r.checked / 4 + 1) << info.name << ": too many samples changed the routing";
    ++tensors;
  }
  EXPECT_GT(tensors, 0) << "no tensor named " << prefix << "*";
}

TEST(TrainGradOps, Linear) {
  const int64_t n = 5, in = 7, out = 4;
  Vec x = random_vector(n * in, 1), w = random_vector(out * in, 2), r = random_vector(n * out, 3);
  Vec y(size_t(n * out)), dx(x.size(), 0.0), dw(w.size(), 0.0);
  Workspace<double> ws;
  auto objective = [&] {
    linear_forward(ws, x.data(), w.data(), n, in, out, y.data());
    return weighted_sum(y.data(), r.data(), n * out);
  };
  linear_backward(ws, x.data(), w.data(), r.data(), n, in, out, dx.data(), dw.data());
  check_gradient("x", x.data(), dx.data(), n * in, objective);
  check_gradient("w", w.data(), dw.data(), out * in, objective);
}

TEST(TrainGradOps, RmsNormStrided) {
  // Rows of 9 values inside rows of stride 13 (as kv_a's latent part), output stride 11.
  const int64_t rows = 4, dim = 9, ldx = 13, ldy = 11;
  Vec x = random_vector(rows * ldx, 4), w = random_vector(dim, 5), r = random_vector(rows * ldy, 6);
  for (int64_t i = 0; i < rows; ++i) r[size_t(i * ldy + dim)] = r[size_t(i * ldy + dim + 1)] = 0;  // padding
  Vec y(size_t(rows * ldy), 0.0), dx(x.size(), 0.0), dw(size_t(dim), 0.0);
  const double eps = 1e-6;
  auto objective = [&] {
    rmsnorm_forward(x.data(), ldx, w.data(), rows, dim, eps, y.data(), ldy);
    return weighted_sum(y.data(), r.data(), rows * ldy);
  };
  rmsnorm_backward(x.data(), ldx, w.data(), r.data(), ldy, rows, dim, eps, dx.data(), ldx, dw.data());
  check_gradient("x", x.data(), dx.data(), rows * ldx, objective, {1e-5, 1e-6, 100});
  check_gradient("w", w.data(), dw.data(), dim, objective);
  for (int64_t i = 0; i < rows; ++i)  // the padding between rows has no gradient
    for (int64_t j = dim; j < ldx; ++j) EXPECT_EQ(dx[size_t(i * ldx + j)], 0.0);
}

TEST(TrainGradOps, EmbeddingRepeatedTokens) {
  const int64_t vocab = 6, dim = 5, rows = 7;
  const std::vector<int32_t> tokens = {3, 1, 3, 0, 5, 3, 1};
  Vec table = random_vector(vocab * dim, 7), r = random_vector(rows * dim, 8);
  Vec y(size_t(rows * dim)), dt(table.size(), 0.0);
  auto objective = [&] {
    embedding_forward(table.data(), vocab, dim, tokens.data(), rows, y.data());
    return weighted_sum(y.data(), r.data(), rows * dim);
  };
  embedding_backward(vocab, dim, tokens.data(), rows, r.data(), dt.data());
  check_gradient("table", table.data(), dt.data(), vocab * dim, objective, {1e-5, 1e-6, 100});
  for (int64_t c = 0; c < dim; ++c) EXPECT_EQ(dt[size_t(2 * dim + c)], 0.0);  // token 2 unused
  std::vector<int32_t> bad = {0, int32_t(vocab)};
  EXPECT_THROW(embedding_forward(table.data(), vocab, dim, bad.data(), 2, y.data()), Error);
}

TEST(TrainGradOps, RopeYarn) {
  const ModelConfig c = v3_grad_config();
  const int64_t seq = 5, rows = 10, vectors = 3, rope_dim = c.qk_rope_head_dim, stride = 4 + vectors * 7;
  const RopeTable table = make_rope_table(c, seq);
  Vec x = random_vector(rows * stride, 9), r = random_vector(rows * stride, 10);
  Vec y, dx = r;
  auto objective = [&] {
    y = x;
    rope_forward(y.data() + 4, rows, seq, vectors, stride, 7, table);
    return weighted_sum(y.data(), r.data(), rows * stride);
  };
  // The gradient of a linear map is its transpose applied to r; untouched entries pass r through.
  rope_backward(dx.data() + 4, rows, seq, vectors, stride, 7, table);
  check_gradient("x", x.data(), dx.data(), rows * stride, objective, {1e-5, 1e-6, 200});
  (void)rope_dim;
}

TEST(TrainGradOps, SwiGluAndMlpWithRowScale) {
  const int64_t n = 6, H = 5, inter = 7;
  Vec g = random_vector(n * inter, 11, 3.0), u = random_vector(n * inter, 12), r = random_vector(n * inter, 13);
  Vec h(size_t(n * inter)), dg(g.size()), du(u.size());
  auto objective = [&] {
    swiglu_forward(g.data(), u.data(), n * inter, h.data());
    return weighted_sum(h.data(), r.data(), n * inter);
  };
  swiglu_backward(g.data(), u.data(), r.data(), n * inter, dg.data(), du.data());
  check_gradient("gate", g.data(), dg.data(), n * inter, objective);
  check_gradient("up", u.data(), du.data(), n * inter, objective);

  Vec wg = random_vector(inter * H, 14), wu = random_vector(inter * H, 15), wd = random_vector(H * inter, 16);
  Vec dwg(wg.size(), 0.0), dwu(wu.size(), 0.0), dwd(wd.size(), 0.0);
  Vec x = random_vector(n * H, 17), scale = random_vector(n, 18), ro = random_vector(n * H, 19);
  Vec dx(x.size(), 0.0), dscale(size_t(n), 0.0), out(size_t(n * H)), sg(size_t(n * inter)), su(size_t(n * inter));
  MlpParams<double> w{wg.data(), wu.data(), wd.data(), inter}, dw{dwg.data(), dwu.data(), dwd.data(), inter};
  Workspace<double> ws;
  auto mlp_objective = [&] {
    mlp_forward(w, x.data(), n, H, scale.data(), MlpSaved<double>{sg.data(), su.data()}, ws, out.data());
    return weighted_sum(out.data(), ro.data(), n * H);
  };
  mlp_objective();
  mlp_backward(w, dw, x.data(), n, H, scale.data(), MlpSaved<double>{sg.data(), su.data()}, ro.data(), ws, dx.data(),
               dscale.data());
  check_gradient("x", x.data(), dx.data(), n * H, mlp_objective);
  check_gradient("row_scale", scale.data(), dscale.data(), n, mlp_objective);
  check_gradient("gate_proj", wg.data(), dwg.data(), inter * H, mlp_objective);
  check_gradient("up_proj", wu.data(), dwu.data(), inter * H, mlp_objective);
  check_gradient("down_proj", wd.data(), dwd.data(), H * inter, mlp_objective);
}

// Router pieces with the selection held fixed: scores -> weights (+ balance loss), logits -> scores.
void check_router(const ModelConfig& c, BalanceLoss balance) {
  const int64_t n = 8, E = c.n_routed_experts, K = c.num_experts_per_tok;
  const SeqShape shape{2, 4};
  MoeOptions o;
  o.balance = balance;
  o.balance_alpha = 0.3;
  Vec logits = random_vector(n * E, 20, 2.0), scores(size_t(n * E)), weights(size_t(n * K));
  Vec bias = random_vector(E, 21, 0.05), r = random_vector(n * K, 22);
  std::vector<int32_t> indices(size_t(n * K));
  router_scores_forward(c, logits.data(), n, scores.data());
  route_select(c, scores.data(), bias.data(), n, indices.data());
  auto objective = [&] {
    router_scores_forward(c, logits.data(), n, scores.data());
    route_weights_forward(c, scores.data(), indices.data(), n, weights.data());
    return weighted_sum(weights.data(), r.data(), n * K) +
           balance_loss_forward(c, o, shape, scores.data(), indices.data());
  };
  objective();
  Vec dscores(size_t(n * E), 0.0), dlogits(size_t(n * E));
  route_weights_backward(c, scores.data(), indices.data(), r.data(), n, dscores.data());
  balance_loss_backward(c, o, shape, scores.data(), indices.data(), dscores.data());
  router_scores_backward(c, scores.data(), dscores.data(), n, dlogits.data());
  check_gradient("logits", logits.data(), dlogits.data(), n * E, objective, {1e-5, 1e-6, 64});
}

TEST(TrainGradRouter, SigmoidNormalisedWithBalanceLosses) {
  check_router(v3_grad_config(), BalanceLoss::none);
  check_router(v3_grad_config(), BalanceLoss::sequence);
  check_router(v3_grad_config(), BalanceLoss::batch);
}

TEST(TrainGradRouter, SoftmaxUnnormalisedWithBalanceLoss) {
  check_router(v2_grad_config(), BalanceLoss::none);
  check_router(v2_grad_config(), BalanceLoss::sequence);
}

TEST(TrainGradRouter, BalanceLossValue) {
  // Two tokens in one sequence, 4 experts, top-1: f = E/(K·T)·count, P = mean normalised score.
  ModelConfig c = v3_grad_config();
  c.n_routed_experts = 4;
  c.num_experts_per_tok = 1;
  c.n_group = 1;
  c.topk_group = 1;
  const Vec scores = {0.5, 0.1, 0.2, 0.2, 0.3, 0.3, 0.2, 0.2};
  const std::vector<int32_t> indices = {0, 1};
  MoeOptions o;
  o.balance = BalanceLoss::sequence;
  o.balance_alpha = 1.0;
  // f = [2, 2, 0, 0]; P = [(0.5+0.3)/2, (0.1+0.3)/2, ...] -> L = 2·0.4 + 2·0.2 = 1.2
  EXPECT_NEAR(balance_loss_forward(c, o, SeqShape{1, 2}, scores.data(), indices.data()), 1.2, 1e-12);
}

// A TrainParams<double> for the config, randomized; and its zeroed gradient arena.
struct ParamsAndGrads {
  explicit ParamsAndGrads(const ModelConfig& c, uint32_t seed) : params(c), grads(params.layout_ptr()) {
    randomize(params, seed);
  }
  TrainParams<double> params;
  TrainParams<double> grads;
};

void check_mla(const ModelConfig& c, SeqShape shape = {2, 5}) {
  ParamsAndGrads pg(c, 30);
  const int64_t n = shape.rows(), H = c.hidden_size;
  const RopeTable rope = make_rope_table(c, shape.seq);
  const AttentionContext ctx{shape, &rope, attention_softmax_scale(c)};
  Vec x = random_vector(n * H, 31), r = random_vector(n * H, 32), out(size_t(n * H)), dx(size_t(n * H), 0.0);
  Vec q_a(size_t(n * c.q_lora_rank.value_or(0))), kv_a(size_t(n * (c.kv_lora_rank + c.qk_rope_head_dim)));
  Vec o(size_t(n * c.num_attention_heads * c.v_head_dim));
  const MlaSaved<double> saved{q_a.data(), kv_a.data(), o.data()};
  Workspace<double> ws;
  ModelParams<double> P = model_params(pg.params), G = model_params(pg.grads);
  auto objective = [&] {
    mla_forward(c, P.layers[0].attn, ctx, x.data(), saved, ws, out.data());
    return weighted_sum(out.data(), r.data(), n * H);
  };
  objective();
  mla_backward(c, P.layers[0].attn, G.layers[0].attn, ctx, x.data(), saved, r.data(), ws, dx.data());
  check_gradient("x", x.data(), dx.data(), n * H, objective, {1e-5, 1e-6, 40});
  check_tensors(pg.params, pg.grads, "model.layers.0.self_attn.", objective);
}

TEST(TrainGradMla, QLoraYarn) { check_mla(v3_grad_config()); }
TEST(TrainGradMla, PlainQProj) { check_mla(v2_grad_config()); }
// Longer than the attention core's 128-row query blocks: blocks above the diagonal are skipped and the
// key gradients are summed over three blocks.
TEST(TrainGradMla, SeveralQueryBlocks) { check_mla(v3_grad_config(), SeqShape{1, 300}); }

TEST(TrainGradMla, CausalAndSequencesIndependent) {
  // Output rows of sequence 0 do not depend on sequence 1, nor on later positions.
  const ModelConfig c = v3_grad_config();
  ParamsAndGrads pg(c, 33);
  const SeqShape shape{2, 4};
  const int64_t n = shape.rows(), H = c.hidden_size;
  const RopeTable rope = make_rope_table(c, shape.seq);
  const AttentionContext ctx{shape, &rope, attention_softmax_scale(c)};
  Vec x = random_vector(n * H, 34), out1(size_t(n * H)), out2(size_t(n * H));
  Vec q_a(size_t(n * *c.q_lora_rank)), kv_a(size_t(n * (c.kv_lora_rank + c.qk_rope_head_dim)));
  Vec o(size_t(n * c.num_attention_heads * c.v_head_dim));
  Workspace<double> ws;
  ModelParams<double> P = model_params(pg.params);
  mla_forward(c, P.layers[0].attn, ctx, x.data(), MlaSaved<double>{q_a.data(), kv_a.data(), o.data()}, ws, out1.data());
  for (int64_t i = 2 * H; i < n * H; ++i) x[size_t(i)] += 1.0;  // change rows 2.. (seq 0 pos 2, 3 and seq 1)
  mla_forward(c, P.layers[0].attn, ctx, x.data(), MlaSaved<double>{q_a.data(), kv_a.data(), o.data()}, ws, out2.data());
  for (int64_t i = 0; i < 2 * H; ++i) EXPECT_EQ(out1[size_t(i)], out2[size_t(i)]);
}

void check_moe(const ModelConfig& c, BalanceLoss balance) {
  ParamsAndGrads pg(c, 40);
  const SeqShape shape{2, 6};
  const int64_t n = shape.rows(), H = c.hidden_size, E = c.n_routed_experts, K = c.num_experts_per_tok;
  const int64_t inter = c.moe_intermediate_size, shared = c.n_shared_experts * inter;
  MoeOptions mo;
  mo.balance = balance;
  mo.balance_alpha = 0.1;
  Vec x = random_vector(n * H, 41), r = random_vector(n * H, 42), out(size_t(n * H)), dx(size_t(n * H), 0.0);
  Vec scores(size_t(n * E)), weights(size_t(n * K)), gate(size_t(n * K * inter)), up(size_t(n * K * inter));
  Vec sg(size_t(n * shared)), su(size_t(n * shared));
  std::vector<int32_t> indices(size_t(n * K)), slot_row(size_t(n * K));
  std::vector<int64_t> begin(size_t(E + 1));
  MoeSaved<double> saved{scores.data(), weights.data(), indices.data(), slot_row.data(), begin.data(),
                         gate.data(),   up.data(),      MlpSaved<double>{sg.data(), su.data()}};
  Workspace<double> ws;
  ModelParams<double> P = model_params(pg.params), G = model_params(pg.grads);
  const MoeParams<double>& w = P.layers[1].moe;
  auto objective = [&] {
    const double bal = moe_forward(c, w, shape, mo, x.data(), saved, ws, out.data());
    return weighted_sum(out.data(), r.data(), n * H) + bal;
  };
  objective();
  const std::vector<int32_t> chosen = indices;
  auto same_routing = [&] { return indices == chosen; };
  moe_backward(c, w, G.layers[1].moe, shape, mo, x.data(), saved, r.data(), ws, dx.data());
  check_gradient("x", x.data(), dx.data(), n * H, objective, {1e-5, 1e-6, 40}, same_routing);
  check_tensors(pg.params, pg.grads, "model.layers.1.mlp.", objective, same_routing);
  if (G.layers[1].moe.correction_bias) {
    for (int64_t e = 0; e < E; ++e) EXPECT_EQ(G.layers[1].moe.correction_bias[e], 0.0);
  }
}

TEST(TrainGradMoe, V3SigmoidGroupsSharedExpert) { check_moe(v3_grad_config(), BalanceLoss::none); }
TEST(TrainGradMoe, V3WithSequenceBalanceLoss) { check_moe(v3_grad_config(), BalanceLoss::sequence); }
TEST(TrainGradMoe, V2SoftmaxGreedyWithBatchAuxLoss) { check_moe(v2_grad_config(), BalanceLoss::batch); }
TEST(TrainGradMoe, GroupLimitedGreedy) {
  ModelConfig c = v2_grad_config();
  c.topk_method = TopkMethod::group_limited_greedy;
  c.n_group = 4;
  c.topk_group = 2;
  check_moe(c, BalanceLoss::none);
}

TEST(TrainGradLoss, HeadCrossEntropy) {
  const int64_t rows = 7, H = 6, V = 11;
  Vec h = random_vector(rows * H, 50), head = random_vector(V * H, 51);
  const std::vector<int32_t> targets = {0, 10, 3, 3, 7, 1, 10};
  Vec dh(h.size(), 0.0), dhead(head.size(), 0.0);
  Workspace<double> ws;
  const double scale = 0.37;
  auto objective = [&] { return scale * head_loss_forward(h.data(), head.data(), rows, H, V, targets.data(), ws); };
  const double fused = head_loss_forward_backward(h.data(), head.data(), rows, H, V, targets.data(), scale, ws,
                                                  dh.data(), dhead.data());
  EXPECT_NEAR(scale * fused, objective(), 1e-12);
  check_gradient("h", h.data(), dh.data(), rows * H, objective);
  check_gradient("head", head.data(), dhead.data(), V * H, objective, {1e-5, 1e-6, 30});
}

TEST(TrainGradLoss, CrossEntropyValueAndExtremeLogits) {
  // One row, H = 1: logits = head[:, 0] · h.  CE = logsumexp − logit_target, also when p_target underflows.
  const Vec h = {1.0};
  const Vec head = {0.0, 800.0, -800.0};
  const std::vector<int32_t> targets = {2};
  Workspace<double> ws;
  EXPECT_NEAR(head_loss_forward(h.data(), head.data(), 1, 1, 3, targets.data(), ws), 1600.0, 1e-9);
  const std::vector<int32_t> bad = {3};
  EXPECT_THROW(head_loss_forward(h.data(), head.data(), 1, 1, 3, bad.data(), ws), Error);
}

TEST(TrainGradMtp, InputProjection) {
  const ModelConfig c = v3_grad_config();
  ParamsAndGrads pg(c, 60);
  const int64_t rows = 6, H = c.hidden_size;
  Vec emb = random_vector(rows * H, 61), h = random_vector(rows * H, 62), r = random_vector(rows * H, 63);
  Vec out(size_t(rows * H)), demb(size_t(rows * H), 0.0), dh(size_t(rows * H), 0.0);
  Workspace<double> ws;
  ModelParams<double> P = model_params(pg.params), G = model_params(pg.grads);
  auto objective = [&] {
    mtp_input_forward(c, P.mtp[0], emb.data(), h.data(), rows, ws, out.data());
    return weighted_sum(out.data(), r.data(), rows * H);
  };
  mtp_input_backward(c, P.mtp[0], G.mtp[0], emb.data(), h.data(), rows, r.data(), ws, demb.data(), dh.data());
  check_gradient("emb", emb.data(), demb.data(), rows * H, objective, {1e-5, 1e-6, 30});
  check_gradient("h", h.data(), dh.data(), rows * H, objective, {1e-5, 1e-6, 30});
  for (const char* name : {"enorm.weight", "hnorm.weight", "eh_proj.weight"}) {
    const ParamInfo& info = pg.params.layout().at(cat("model.layers.2.", name));
    check_gradient(info.name, pg.params.data() + info.offset, pg.grads.data() + info.offset, info.numel, objective);
  }
}

TEST(TrainGradBlock, DenseAndMoeBlocks) {
  const ModelConfig c = v3_grad_config();
  for (int64_t layer : {0, 1}) {
    ParamsAndGrads pg(c, 70 + uint32_t(layer));
    const SeqShape shape{2, 4};
    const int64_t n = shape.rows(), H = c.hidden_size, E = c.n_routed_experts, K = c.num_experts_per_tok;
    const int64_t inter = c.moe_intermediate_size;
    const RopeTable rope = make_rope_table(c, shape.seq);
    const AttentionContext ctx{shape, &rope, attention_softmax_scale(c)};
    Vec x = random_vector(n * H, 71), r = random_vector(n * H, 72), out(size_t(n * H));
    Vec store(size_t(n * (H + 200 + 2 * c.intermediate_size + E + K + 2 * K * inter + 2 * inter)), 0.0);
    std::vector<int32_t> ints(size_t(2 * n * K));
    std::vector<int64_t> begin(size_t(E + 1));
    // Carve the saved tensors out of `store`.
    double* p = store.data();
    auto take = [&](int64_t count) {
      double* at = p;
      p += count;
      return at;
    };
    BlockSaved<double> s;
    s.x_mid = take(n * H);
    s.attn = MlaSaved<double>{take(n * *c.q_lora_rank), take(n * (c.kv_lora_rank + c.qk_rope_head_dim)),
                              take(n * c.num_attention_heads * c.v_head_dim)};
    s.mlp = MlpSaved<double>{take(n * c.intermediate_size), take(n * c.intermediate_size)};
    s.moe = MoeSaved<double>{take(n * E),         take(n * K),         ints.data(),
                             ints.data() + n * K, begin.data(),        take(n * K * inter),
                             take(n * K * inter), MlpSaved<double>{take(n * inter), take(n * inter)}};
    ASSERT_LE(p - store.data(), int64_t(store.size()));
    MoeOptions mo;
    mo.balance = BalanceLoss::sequence;
    mo.balance_alpha = 0.05;
    Workspace<double> ws;
    ModelParams<double> P = model_params(pg.params), G = model_params(pg.grads);
    auto objective = [&] {
      const double bal = block_forward(c, P.layers[size_t(layer)], ctx, mo, x.data(), s, ws, out.data());
      return weighted_sum(out.data(), r.data(), n * H) + bal;
    };
    objective();
    const std::vector<int32_t> chosen = ints;
    auto same_routing = [&] { return layer == 0 || ints == chosen; };
    Vec dx = r;  // dL/dx_out on entry
    block_backward(c, P.layers[size_t(layer)], G.layers[size_t(layer)], ctx, mo, x.data(), s, ws, dx.data());
    check_gradient("x", x.data(), dx.data(), n * H, objective, {1e-5, 1e-6, 40}, same_routing);
    check_tensors(pg.params, pg.grads, cat("model.layers.", layer, "."), objective, same_routing, {1e-5, 1e-6, 4});
  }
}

}  // namespace
}  // namespace dsv3
