#include "train/train_step.h"

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "core/profiler.h"
#include "core/error.h"
#include "core/parallel.h"
#include "ops/ops.h"
#include "train/fp8_linear.h"
#include "train/loss_train.h"
#include "train/mtp_train.h"

namespace dsv3 {

int64_t resolve_mtp_depth(const ModelConfig& config, const TrainOptions& options) {
  const int64_t available = config.num_nextn_predict_layers;
  const int64_t depth = options.mtp_depth < 0 ? available : options.mtp_depth;
  DSV3_CHECK(depth <= available, "[train] MTP depth ", depth, " requested but the model has ", available,
             " MTP modules (num_nextn_predict_layers)");
  return depth;
}

namespace {

// Matmul parameters one token passes through in block `layer` (attention + FFN).
double block_matmul_params(const ModelConfig& c, int64_t layer) {
  const double H = double(c.hidden_size), heads = double(c.num_attention_heads);
  double p = c.q_lora_rank ? double(*c.q_lora_rank) * (H + heads * double(c.qk_head_dim())) : H * heads * double(c.qk_head_dim());
  p += H * double(c.kv_lora_rank + c.qk_rope_head_dim);
  p += double(c.kv_lora_rank) * heads * double(c.qk_nope_head_dim + c.v_head_dim);
  p += heads * double(c.v_head_dim) * H;
  if (c.is_moe_layer(layer))
    p += double(c.n_routed_experts) * H +
         double(c.num_experts_per_tok + c.n_shared_experts) * 3.0 * H * double(c.moe_intermediate_size);
  else
    p += 3.0 * H * double(c.intermediate_size);
  return p;
}

// Forward FLOPs of the causal attention core of one block over a sequence of `seq` tokens.
double attention_flops(const ModelConfig& c, int64_t seq) {
  return 2.0 * double(c.num_attention_heads) * double(c.qk_head_dim() + c.v_head_dim) * double(seq) *
         double(seq + 1) / 2.0;
}

}  // namespace

double part_train_flops(const ModelConfig& c, const ModelPart& part, int64_t batch, int64_t seq, int64_t mtp_depth) {
  const double H = double(c.hidden_size), V = double(c.vocab_size);
  double flops = 0;
  for (int64_t l = part.first_layer; l < part.end_layer; ++l)
    flops += 6.0 * block_matmul_params(c, l) * double(batch * seq) + 3.0 * attention_flops(c, seq) * double(batch);
  if (!part.last(c)) return flops;
  flops += 6.0 * V * H * double(batch * seq);
  for (int64_t k = 0; k < mtp_depth; ++k) {
    const int64_t sk = seq - 1 - k;
    const double p = 2.0 * H * H + block_matmul_params(c, c.num_hidden_layers + k) + V * H;
    flops += 6.0 * p * double(batch * sk) + 3.0 * attention_flops(c, sk) * double(batch);
  }
  return flops;
}

double train_step_flops(const ModelConfig& c, int64_t batch, int64_t seq, int64_t mtp_depth) {
  return part_train_flops(c, ModelPart::whole(c), batch, seq, mtp_depth);
}

// ---- activations ----

namespace {

// Hands out the arrays of the activation arenas. Run twice: counting (no bases), then assigning.
template <typename T>
class Carver {
 public:
  Carver(T* values, int64_t* integers) : values_(values), integers_(integers) {}
  T* values(int64_t n) {
    const int64_t at = n_values_;
    n_values_ += (n + 15) / 16 * 16;
    return values_ ? values_ + at : nullptr;
  }
  int64_t* i64(int64_t n) {
    const int64_t at = n_integers_;
    n_integers_ += n;
    return integers_ ? integers_ + at : nullptr;
  }
  int32_t* i32(int64_t n) { return reinterpret_cast<int32_t*>(i64((n + 1) / 2)); }
  int64_t n_values() const { return n_values_; }
  int64_t n_integers() const { return n_integers_; }

 private:
  T* values_;
  int64_t* integers_;
  int64_t n_values_ = 0, n_integers_ = 0;
};

template <typename T>
BlockSaved<T> carve_block(Carver<T>& cv, const ModelConfig& c, int64_t layer, int64_t rows) {
  const int64_t H = c.hidden_size;
  BlockSaved<T> s;
  s.x_mid = cv.values(rows * H);
  if (c.q_lora_rank) s.attn.q_a = cv.values(rows * *c.q_lora_rank);
  s.attn.kv_a = cv.values(rows * (c.kv_lora_rank + c.qk_rope_head_dim));
  s.attn.o = cv.values(rows * c.num_attention_heads * c.v_head_dim);
  if (!c.is_moe_layer(layer)) {
    s.mlp.gate = cv.values(rows * c.intermediate_size);
    s.mlp.up = cv.values(rows * c.intermediate_size);
    return s;
  }
  const int64_t E = c.n_routed_experts, K = c.num_experts_per_tok, inter = c.moe_intermediate_size;
  s.moe.scores = cv.values(rows * E);
  s.moe.weights = cv.values(rows * K);
  s.moe.indices = cv.i32(rows * K);
  s.moe.slot_row = cv.i32(rows * K);
  s.moe.expert_begin = cv.i64(E + 1);
  s.moe.gate = cv.values(rows * K * inter);
  s.moe.up = cv.values(rows * K * inter);
  if (c.n_shared_experts > 0) {
    s.moe.shared.gate = cv.values(rows * c.n_shared_experts * inter);
    s.moe.shared.up = cv.values(rows * c.n_shared_experts * inter);
  }
  return s;
}

template <typename T>
void carve_all(TrainActivations<T>& a, Carver<T>& cv) {
  const ModelConfig& c = a.config();
  const int64_t rows = a.shape().rows(), H = c.hidden_size;
  a.inputs = cv.i32(rows);
  a.targets = cv.i32(rows);
  for (int64_t l = 0; l <= c.num_hidden_layers; ++l) a.x[size_t(l)] = cv.values(rows * H);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) a.layers[size_t(l)] = carve_block(cv, c, l, rows);
  a.hidden = cv.values(rows * H);
  a.dhidden = cv.values(rows * H);
  for (size_t k = 0; k < a.mtp.size(); ++k) {
    typename TrainActivations<T>::Mtp& m = a.mtp[k];
    const int64_t r = m.shape.rows();
    m.inputs = cv.i32(r);
    m.targets = cv.i32(r);
    m.h_in = cv.values(r * H);
    m.x_in = cv.values(r * H);
    m.block = carve_block(cv, c, c.num_hidden_layers + int64_t(k), r);
    m.x_out = cv.values(r * H);
    m.dx_out = cv.values(r * H);
  }
}

}  // namespace

template <typename T>
TrainActivations<T>::TrainActivations(const ModelConfig& config, int64_t batch, int64_t seq, int64_t mtp_depth)
    : config_(config), shape_{batch, seq} {
  DSV3_CHECK(batch > 0 && seq > 0, "[train] batch (", batch, ") and sequence length (", seq, ") must be positive");
  DSV3_CHECK(mtp_depth >= 0 && mtp_depth <= config.num_nextn_predict_layers, "[train] MTP depth ", mtp_depth,
             " outside [0, num_nextn_predict_layers = ", config.num_nextn_predict_layers, "]");
  DSV3_CHECK(seq > mtp_depth, "[train] sequence length ", seq, " leaves no positions for MTP depth ", mtp_depth,
             " (module k predicts token i+2+k; needs seq > depth)");
  x.resize(size_t(config.num_hidden_layers + 1));
  layers.resize(size_t(config.num_hidden_layers));
  mtp.resize(size_t(mtp_depth));
  for (int64_t k = 0; k < mtp_depth; ++k) mtp[size_t(k)].shape = SeqShape{batch, seq - 1 - k};
  rope = make_rope_table(config, seq);
  Carver<T> count(nullptr, nullptr);
  carve_all(*this, count);
  values_.assign(size_t(count.n_values()), T(0));
  integers_.assign(size_t(count.n_integers()), 0);
  Carver<T> assign(values_.data(), integers_.data());
  carve_all(*this, assign);
  for (BlockSaved<T>& block : layers)
    if (block.moe.scores) block.moe.remote = &moe_remote_.emplace_back();
  for (Mtp& m : mtp)
    if (m.block.moe.scores) m.block.moe.remote = &moe_remote_.emplace_back();
  segment_starts.emplace_back(size_t(batch * seq));
  for (const Mtp& m : mtp) segment_starts.emplace_back(size_t(m.shape.rows()));
}

template <typename T>
int64_t TrainActivations<T>::stored_bytes() const {
  return int64_t(values_.size() * sizeof(T) + integers_.size() * sizeof(int64_t));
}

// ---- the step ----

namespace {

// dst[b·dst_seq + t] (+)= src[b·src_seq + t] for t < dst_seq: the first dst_seq positions of each row.
template <typename T>
void copy_prefix_rows(const T* src, int64_t src_seq, T* dst, int64_t dst_seq, int64_t batch, int64_t width,
                      bool accumulate) {
  parallel_for(batch * dst_seq, 16, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const T* s = src + ((r / dst_seq) * src_seq + r % dst_seq) * width;
      T* d = dst + r * width;
      if (accumulate)
        for (int64_t i = 0; i < width; ++i) d[i] += s[i];
      else
        std::memcpy(d, s, size_t(width) * sizeof(T));
    }
  });
}

template <typename T>
void zero(T* p, int64_t n) {
  std::fill(p, p + n, T(0));
}

int64_t counted_targets(const int32_t* targets, int64_t n) {
  return n - std::count(targets, targets + n, kIgnoredTarget);
}

// 1 / (targets that count), the weight of each in a mean; 0 when none does.
double per_target(int64_t counted) { return counted > 0 ? 1.0 / double(counted) : 0.0; }
double mean_over(double sum, int64_t counted) { return counted > 0 ? sum / double(counted) : 0.0; }

template <typename T>
void add_loads(const ModelConfig& c, int64_t layer, const BlockSaved<T>& s, StepStats& stats) {
  if (!c.is_moe_layer(layer)) return;
  std::vector<int64_t> load(size_t(c.n_routed_experts));
  for (int64_t e = 0; e < c.n_routed_experts; ++e)
    load[size_t(e)] = s.moe.expert_begin[e + 1] - s.moe.expert_begin[e];
  stats.moe_layers.push_back(layer);
  stats.expert_load.push_back(std::move(load));
}

// Checks, the step's weights in the GEMMs' precision, and the inputs and targets of the main model and
// of every MTP module (each part of a pipeline fills them from the same tokens).
template <typename T>
void prepare_part(TrainParams<T>& params, TrainParams<T>* grads, TrainActivations<T>& a, const int32_t* tokens,
                  const TrainOptions& o, const ModelPart& part) {
  const ModelConfig& c = params.config();
  const ModelConfig& ac = a.config();
  DSV3_CHECK(ac.hidden_size == c.hidden_size && ac.num_hidden_layers == c.num_hidden_layers &&
                 ac.vocab_size == c.vocab_size && ac.n_routed_experts == c.n_routed_experts,
             "[train] the activations were sized for another model config");
  const int64_t D = resolve_mtp_depth(c, o);
  DSV3_CHECK(D == a.mtp_depth(), "[train] activations sized for MTP depth ", a.mtp_depth(), ", options ask for ", D);
  DSV3_CHECK(grads == nullptr || grads->size() == params.size(), "[train] gradients have another layout");
  DSV3_CHECK(tokens != nullptr, "[train] no tokens");
  DSV3_CHECK(part.first_layer >= 0 && part.first_layer < part.end_layer && part.end_layer <= c.num_hidden_layers,
             "[train] model part [", part.first_layer, ", ", part.end_layer, ") outside the ", c.num_hidden_layers,
             " layers");
  Workspace<T>& ws = a.ws;
  ws.set_precision(o.precision);
  ws.set_bf16_weights(nullptr, 0, nullptr);
  if constexpr (std::is_same_v<T, float>) {
    if (o.precision != ComputePrecision::f32) {  // weights are rounded once per step, not at every GEMM
      a.weights_bf16.resize(size_t(params.size()));
      constexpr int64_t kRow = 1 << 14;
      const int64_t full = params.size() / kRow, tail = params.size() - full * kRow;
      f32_to_bf16_2d(params.data(), full, kRow, kRow, a.weights_bf16.data());
      if (tail > 0) f32_to_bf16_2d(params.data() + full * kRow, 1, tail, tail, a.weights_bf16.data() + full * kRow);
      ws.set_bf16_weights(params.data(), params.size(), a.weights_bf16.data());
    }
    ws.set_fp8_weights(nullptr);
    if (o.precision == ComputePrecision::fp8) {  // quantized once per step from the FP32 master weights
      if (!a.fp8_weights) a.fp8_weights = std::make_shared<Fp8Weights>();
      a.fp8_weights->refresh(params);
      ws.set_fp8_weights(a.fp8_weights.get());
    }
  }
  const SeqShape shape = a.shape();
  const int64_t B = shape.batch, S = shape.seq;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < S; ++t) {
      a.inputs[b * S + t] = tokens[b * (S + 1) + t];
      a.targets[b * S + t] = tokens[b * (S + 1) + t + 1];
    }
  for (int64_t k = 0; k < D; ++k) {
    typename TrainActivations<T>::Mtp& m = a.mtp[size_t(k)];
    const int64_t Sk = m.shape.seq;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < Sk; ++t) {
        m.inputs[b * Sk + t] = tokens[b * (S + 1) + t + 1 + k];
        m.targets[b * Sk + t] = tokens[b * (S + 1) + t + 2 + k];
      }
  }
  if (a.document_start.empty()) return;
  // Packed documents: a prediction counts when its target is marked and in the predicting position's
  // document; each position attends inside its document.
  DSV3_CHECK(int64_t(a.document_start.size()) == B * (S + 1) && int64_t(a.loss_mask.size()) == B * (S + 1),
             "[train] document starts and loss mask must hold batch × (seq + 1) = ", B * (S + 1), " entries");
  for (int64_t b = 0; b < B; ++b) {
    const int32_t* start = a.document_start.data() + b * (S + 1);
    const uint8_t* mask = a.loss_mask.data() + b * (S + 1);
    for (int64_t t = 0; t <= S; ++t)
      DSV3_CHECK(start[t] >= 0 && start[t] <= t && (t == 0 || start[t] == start[t - 1] || start[t] == t),
                 "[train] document start ", start[t], " at position ", t, " of row ", b, " is not a document's first "
                 "position");
    const auto target = [&](int64_t from, int64_t to, int32_t token) {
      return mask[to] && start[to] == start[from] ? token : kIgnoredTarget;
    };
    for (int64_t t = 0; t < S; ++t) {
      a.segment_starts[0][size_t(b * S + t)] = start[t];
      a.targets[b * S + t] = target(t, t + 1, a.targets[b * S + t]);
    }
    for (int64_t k = 0; k < D; ++k) {
      typename TrainActivations<T>::Mtp& m = a.mtp[size_t(k)];
      const int64_t Sk = m.shape.seq;
      for (int64_t t = 0; t < Sk; ++t) {
        a.segment_starts[size_t(k + 1)][size_t(b * Sk + t)] = start[t];
        m.targets[b * Sk + t] = target(t, t + 2 + k, m.targets[b * Sk + t]);
      }
    }
  }
}

template <typename T>
StepStats part_forward(TrainParams<T>& params, TrainParams<T>* grads, TrainActivations<T>& a, const int32_t* tokens,
                       const TrainOptions& o, const ModelPart& part, const T* x_in, double balance_in, T* x_out,
                       T* logits) {
  DSV3_ZONE("step.forward");
  prepare_part(params, grads, a, tokens, o, part);
  const ModelConfig& c = params.config();
  const int64_t D = a.mtp_depth();
  const SeqShape shape = a.shape();
  const int64_t B = shape.batch, S = shape.seq, rows = shape.rows(), H = c.hidden_size, V = c.vocab_size;
  const int64_t L = c.num_hidden_layers;
  const double eps = c.rms_norm_eps;
  Workspace<T>& ws = a.ws;
  typename Workspace<T>::Scope scope(ws);
  ModelParams<T> P = model_params(params);
  ModelParams<T> G;
  if (grads) G = model_params(*grads);

  StepStats stats;
  stats.tokens = rows;  // the targets that count, once the last part knows them
  stats.balance_loss = balance_in;
  const AttentionContext ctx{shape, &a.rope, attention_softmax_scale(c), a.segment_start(-1)};
  if (part.first())
    embedding_forward(P.embed_tokens, V, H, a.inputs, rows, a.x[0]);
  else
    std::copy(x_in, x_in + rows * H, a.x[size_t(part.first_layer)]);
  for (int64_t l = part.first_layer; l < part.end_layer; ++l) {
    stats.balance_loss += block_forward(c, P.layers[size_t(l)], ctx, o.moe, a.x[size_t(l)], a.layers[size_t(l)], ws,
                                        a.x[size_t(l + 1)]);
    add_loads(c, l, a.layers[size_t(l)], stats);
  }
  if (!part.last(c)) {
    std::copy(a.x[size_t(part.end_layer)], a.x[size_t(part.end_layer)] + rows * H, x_out);
    return stats;
  }
  rmsnorm_forward(a.x[size_t(L)], H, P.norm, rows, H, eps, a.hidden, H);
  double ce_sum;
  // The mean over the targets that count: all of them, except where packed documents leave some out.
  const int64_t counted = counted_targets(a.targets, rows);
  stats.tokens = counted;
  if (o.token_objective) {  // dsv3 grpo: the objective's value is the main loss
    DSV3_CHECK(D == 0, "[train] a token objective replaces the main model's cross-entropy; run it with MTP depth 0");
    if (grads) {
      zero(a.dhidden, rows * H);
      ce_sum = head_objective_forward_backward(a.hidden, P.lm_head, rows, H, V, a.targets, *o.token_objective, ws,
                                               a.dhidden, G.lm_head);
    } else {
      ce_sum = head_objective_forward(a.hidden, P.lm_head, rows, H, V, a.targets, *o.token_objective, ws);
    }
    stats.main_loss = ce_sum;
  } else if (grads) {
    zero(a.dhidden, rows * H);
    ce_sum = head_loss_forward_backward(a.hidden, P.lm_head, rows, H, V, a.targets, per_target(counted), ws,
                                        a.dhidden, G.lm_head);
  } else {
    ce_sum = head_loss_forward(a.hidden, P.lm_head, rows, H, V, a.targets, ws, logits);
  }
  if (!o.token_objective) stats.main_loss = mean_over(ce_sum, counted);

  // MTP modules: forward, and the head's gradient down to dx_out (backward of the rest follows).
  for (int64_t k = 0; k < D; ++k) {
    typename TrainActivations<T>::Mtp& m = a.mtp[size_t(k)];
    const MtpParams<T>& mp = P.mtp[size_t(k)];
    const int64_t Sk = m.shape.seq, rk = m.shape.rows();
    if (k == 0)
      copy_prefix_rows(a.hidden, S, m.h_in, Sk, B, H, false);
    else
      copy_prefix_rows(a.mtp[size_t(k - 1)].x_out, a.mtp[size_t(k - 1)].shape.seq, m.h_in, Sk, B, H, false);
    {
      typename Workspace<T>::Scope inner(ws);
      T* emb = ws.take(rk * H);
      embedding_forward(mp.embed_tokens, V, H, m.inputs, rk, emb);
      mtp_input_forward(c, mp, emb, m.h_in, rk, ws, m.x_in);
    }
    const AttentionContext ctx_k{m.shape, &a.rope, ctx.softmax_scale, a.segment_start(k)};
    stats.balance_loss += block_forward(c, mp.block, ctx_k, o.moe, m.x_in, m.block, ws, m.x_out);
    add_loads(c, L + k, m.block, stats);
    typename Workspace<T>::Scope inner(ws);
    T* h = ws.take(rk * H);
    rmsnorm_forward(m.x_out, H, mp.shared_head_norm, rk, H, eps, h, H);
    const int64_t ck = counted_targets(m.targets, rk);
    double ce_k;
    if (grads) {
      T* dh = ws.take(rk * H);
      zero(dh, rk * H);
      ce_k = head_loss_forward_backward(h, mp.shared_head, rk, H, V, m.targets, ck > 0 ? o.mtp_lambda / double(D * ck) : 0.0, ws, dh,
                                        G.mtp[size_t(k)].shared_head);
      zero(m.dx_out, rk * H);
      rmsnorm_backward(m.x_out, H, mp.shared_head_norm, dh, H, rk, H, eps, m.dx_out, H, G.mtp[size_t(k)].shared_head_norm);
    } else {
      ce_k = head_loss_forward(h, mp.shared_head, rk, H, V, m.targets, ws);
    }
    stats.mtp_loss.push_back(mean_over(ce_k, ck));
  }
  stats.loss = stats.main_loss + stats.balance_loss;
  for (double l : stats.mtp_loss) stats.loss += o.mtp_lambda / double(D) * l;
  return stats;
}

template <typename T>
void part_backward(TrainParams<T>& params, TrainParams<T>& grads, TrainActivations<T>& a, const TrainOptions& o,
                   const ModelPart& part, const T* dx_out, T* dx_in, T* mtp_demb) {
  DSV3_ZONE("step.backward");
  const ModelConfig& c = params.config();
  const int64_t D = a.mtp_depth();
  const SeqShape shape = a.shape();
  const int64_t S = shape.seq, rows = shape.rows(), H = c.hidden_size, V = c.vocab_size;
  const int64_t L = c.num_hidden_layers;
  const double eps = c.rms_norm_eps;
  const bool whole = part.first() && part.last(c);
  Workspace<T>& ws = a.ws;
  typename Workspace<T>::Scope scope(ws);
  ModelParams<T> P = model_params(params);
  ModelParams<T> G = model_params(grads);
  const AttentionContext ctx{shape, &a.rope, attention_softmax_scale(c), a.segment_start(-1)};
  // Where MTP module k's embedding gradient rows sit in mtp_demb: after those of modules k+1 … D−1, in
  // the order the backward produces them.
  const auto demb_rows = [&](int64_t k) {
    int64_t at = 0;
    for (int64_t j = D - 1; j > k; --j) at += a.mtp[size_t(j)].shape.rows();
    return mtp_demb + at * H;
  };

  T* dx = ws.take(rows * H);
  if (part.last(c)) {
    for (int64_t k = D - 1; k >= 0; --k) {
      typename TrainActivations<T>::Mtp& m = a.mtp[size_t(k)];
      const MtpParams<T>& mp = P.mtp[size_t(k)];
      MtpParams<T>& mg = G.mtp[size_t(k)];
      const int64_t Sk = m.shape.seq, rk = m.shape.rows();
      const AttentionContext ctx_k{m.shape, &a.rope, ctx.softmax_scale, a.segment_start(k)};
      block_backward(c, mp.block, mg.block, ctx_k, o.moe, m.x_in, m.block, ws, m.dx_out);
      typename Workspace<T>::Scope inner(ws);
      T* emb = ws.take(rk * H);
      T* demb = whole ? ws.take(rk * H) : demb_rows(k);
      T* dh = ws.take(rk * H);
      embedding_forward(mp.embed_tokens, V, H, m.inputs, rk, emb);
      zero(demb, rk * H);
      zero(dh, rk * H);
      mtp_input_backward(c, mp, mg, emb, m.h_in, rk, m.dx_out, ws, demb, dh);
      // The embedding lives with the first part: a pipeline sends these rows down to it.
      if (whole) embedding_backward(V, H, m.inputs, rk, demb, mg.embed_tokens);
      // dh belongs to the first Sk positions of the previous depth's rows.
      const auto scatter = [&](T* dst, int64_t dst_seq) {
        parallel_for(rk, 16, [&](int64_t b, int64_t e) {
          for (int64_t r = b; r < e; ++r) {
            T* d = dst + ((r / Sk) * dst_seq + r % Sk) * H;
            const T* s = dh + r * H;
            for (int64_t i = 0; i < H; ++i) d[i] += s[i];
          }
        });
      };
      if (k == 0)
        scatter(a.dhidden, S);
      else
        scatter(a.mtp[size_t(k - 1)].dx_out, a.mtp[size_t(k - 1)].shape.seq);
    }
    zero(dx, rows * H);
    rmsnorm_backward(a.x[size_t(L)], H, P.norm, a.dhidden, H, rows, H, eps, dx, H, G.norm);
  } else {
    std::copy(dx_out, dx_out + rows * H, dx);
  }
  for (int64_t l = part.end_layer - 1; l >= part.first_layer; --l)
    block_backward(c, P.layers[size_t(l)], G.layers[size_t(l)], ctx, o.moe, a.x[size_t(l)], a.layers[size_t(l)], ws,
                   dx);
  if (!part.first()) {
    std::copy(dx, dx + rows * H, dx_in);
    return;
  }
  if (!whole)
    for (int64_t k = D - 1; k >= 0; --k)
      embedding_backward(V, H, a.mtp[size_t(k)].inputs, a.mtp[size_t(k)].shape.rows(), demb_rows(k),
                         G.mtp[size_t(k)].embed_tokens);
  embedding_backward(V, H, a.inputs, rows, dx, G.embed_tokens);
}

}  // namespace

template <typename T>
StepStats train_forward(TrainParams<T>& params, TrainActivations<T>& acts, const int32_t* tokens,
                        const TrainOptions& options, T* logits) {
  return part_forward<T>(params, nullptr, acts, tokens, options, ModelPart::whole(params.config()), nullptr, 0.0,
                         nullptr, logits);
}

template <typename T>
StepStats train_forward_backward(TrainParams<T>& params, TrainParams<T>& grads, TrainActivations<T>& acts,
                                 const int32_t* tokens, const TrainOptions& options) {
  const ModelPart whole = ModelPart::whole(params.config());
  const StepStats stats = part_forward<T>(params, &grads, acts, tokens, options, whole, nullptr, 0.0, nullptr, nullptr);
  part_backward<T>(params, grads, acts, options, whole, nullptr, nullptr, nullptr);
  return stats;
}

template <typename T>
StepStats train_part_forward(TrainParams<T>& params, TrainParams<T>& grads, TrainActivations<T>& acts,
                             const int32_t* tokens, const TrainOptions& options, const ModelPart& part, const T* x_in,
                             double balance_in, T* x_out) {
  return part_forward<T>(params, &grads, acts, tokens, options, part, x_in, balance_in, x_out, nullptr);
}

template <typename T>
void train_part_backward(TrainParams<T>& params, TrainParams<T>& grads, TrainActivations<T>& acts,
                         const TrainOptions& options, const ModelPart& part, const T* dx_out, T* dx_in, T* mtp_demb) {
  part_backward<T>(params, grads, acts, options, part, dx_out, dx_in, mtp_demb);
}

int64_t mtp_embedding_rows(int64_t batch, int64_t seq, int64_t mtp_depth) {
  int64_t rows = 0;
  for (int64_t k = 0; k < mtp_depth; ++k) rows += batch * (seq - 1 - k);
  return rows;
}

#define DSV3_INSTANTIATE(T)                                                                                  \
  template class TrainActivations<T>;                                                                        \
  template StepStats train_forward(TrainParams<T>&, TrainActivations<T>&, const int32_t*, const TrainOptions&, \
                                   T*);                                                                      \
  template StepStats train_forward_backward(TrainParams<T>&, TrainParams<T>&, TrainActivations<T>&,          \
                                            const int32_t*, const TrainOptions&);                            \
  template StepStats train_part_forward(TrainParams<T>&, TrainParams<T>&, TrainActivations<T>&, const int32_t*, \
                                        const TrainOptions&, const ModelPart&, const T*, double, T*);        \
  template void train_part_backward(TrainParams<T>&, TrainParams<T>&, TrainActivations<T>&, const TrainOptions&, \
                                    const ModelPart&, const T*, T*, T*);
DSV3_INSTANTIATE(float)
DSV3_INSTANTIATE(double)
#undef DSV3_INSTANTIATE

}  // namespace dsv3
