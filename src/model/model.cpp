#include "model/model.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/parallel.h"
#include "model/mtp.h"
#include "model/rope.h"
#include "model/transformer.h"
#include "ops/ops.h"

namespace dsv3 {

namespace {

void ensure_shape(Tensor* t, const Shape& shape) {
  if (t->empty() || t->dtype() != DType::F32 || t->shape() != shape) *t = Tensor(DType::F32, shape);
}

// Tokens per chunk for n inputs; reserves the scratch buffers for that chunk up front.
int64_t prepare_chunks(const ModelConfig& config, KVCache& cache, int64_t n, const ForwardOptions& o) {
  const int64_t chunk = o.prefill_chunk > 0 ? std::min(o.prefill_chunk, n) : n;
  cache.scratch().reserve(config, chunk, cache.capacity(), num_threads());
  return chunk;
}

// The per-chunk context, with the rope tables of its positions.
ChunkContext make_context(const ModelWeights& w, const ForwardOptions& o, Scratch& s, int64_t pos, int64_t n) {
  rope_tables(w.rope, pos, n, s.rope_cos.data(), s.rope_sin.data());
  ChunkContext c;
  c.pos = pos;
  c.n = n;
  c.rope_cos = s.rope_cos.data();
  c.rope_sin = s.rope_sin.data();
  c.softmax_scale = w.softmax_scale;
  c.precision = o.precision;
  c.attention = o.attention;
  return c;
}

// normed = norm(x) for the chunk's m rows; logits of all rows (at row offset `off`) or of the last row.
void head_logits(const ModelConfig& config, const Tensor& norm, const LinearWeight& head, const ForwardOptions& o,
                 Scratch& s, int64_t m, int64_t off, bool last_chunk, Tensor* logits) {
  const int64_t H = config.hidden_size;
  rmsnorm(s.x.data(), norm.as<float>(), float(config.rms_norm_eps), s.normed.data(), m, H);
  if (logits == nullptr) return;
  if (o.all_logits)
    linear(head, s.normed.data(), logits->as<float>() + off * head.rows, m, o.precision);
  else if (last_chunk)
    linear(head, s.normed.data() + (m - 1) * H, logits->as<float>(), 1, o.precision);
}

}  // namespace

std::unique_ptr<Model> load_model(const std::string& dir) {
  auto model = std::make_unique<Model>();
  model->config = load_model_config(dir + "/config.json");
  model->store = TensorStore::open_dir(dir);
  model->weights = bind_weights(model->config, model->store);
  return model;
}

void forward(const Model& model, KVCache& cache, const int32_t* tokens, int64_t n, const ForwardOptions& o,
             Tensor* logits, Tensor* hidden) {
  const ModelConfig& c = model.config;
  const ModelWeights& w = model.weights;
  const int64_t H = c.hidden_size, pos0 = cache.size();
  DSV3_CHECK(n > 0, "[forward] no tokens to process");
  DSV3_CHECK(pos0 + n <= cache.capacity(), "[forward] ", pos0, " cached + ", n, " new tokens exceed the KV cache "
             "capacity of ", cache.capacity(), "; create the KVCache with a larger max_tokens.");
  if (logits) ensure_shape(logits, {o.all_logits ? n : 1, w.lm_head.rows});
  if (hidden) ensure_shape(hidden, {n, H});
  const int64_t chunk = prepare_chunks(c, cache, n, o);
  Scratch& s = cache.scratch();
  for (int64_t off = 0; off < n; off += chunk) {
    const int64_t m = std::min(chunk, n - off);
    const ChunkContext ctx = make_context(w, o, s, pos0 + off, m);
    embedding_gather(w.embed_tokens, tokens + off, m, s.x.data());
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) block_forward(c, w.layers[size_t(l)], l, ctx, cache, s.x.data());
    cache.set_size(pos0 + off + m);
    head_logits(c, w.norm, w.lm_head, o, s, m, off, off + m == n, logits);
    if (hidden) std::memcpy(hidden->as<float>() + off * H, s.normed.data(), size_t(m * H) * sizeof(float));
  }
}

void mtp_forward(const Model& model, int k, KVCache& cache, const float* hidden, const int32_t* next_tokens, int64_t n,
                 const ForwardOptions& o, Tensor* logits, Tensor* hidden_out) {
  const ModelConfig& c = model.config;
  const ModelWeights& w = model.weights;
  DSV3_CHECK(k >= 0 && size_t(k) < w.mtp.size(), "[mtp] module ", k, " requested; the checkpoint has ", w.mtp.size(),
             " (num_nextn_predict_layers)");
  DSV3_CHECK(n > 0, "[mtp] no tokens to process");
  DSV3_CHECK(hidden != nullptr && next_tokens != nullptr, "[mtp] hidden states and next tokens are required");
  const MtpWeights& m = w.mtp[size_t(k)];
  const int64_t H = c.hidden_size, pos0 = cache.mtp_size(k), layer = c.num_hidden_layers + k;
  DSV3_CHECK(pos0 + n <= cache.capacity(), "[mtp] ", pos0, " cached + ", n, " new positions exceed the KV cache "
             "capacity of ", cache.capacity());
  if (logits) ensure_shape(logits, {o.all_logits ? n : 1, m.shared_head.rows});
  if (hidden_out) ensure_shape(hidden_out, {n, H});
  const int64_t chunk = prepare_chunks(c, cache, n, o);
  Scratch& s = cache.scratch();
  for (int64_t off = 0; off < n; off += chunk) {
    const int64_t rows = std::min(chunk, n - off);
    const ChunkContext ctx = make_context(w, o, s, pos0 + off, rows);
    embedding_gather(m.embed_tokens, next_tokens + off, rows, s.x.data());
    mtp_input(c, m, s.x.data(), hidden + off * H, rows, o.precision, s.concat.data(), s.x.data());
    block_forward(c, m.block, layer, ctx, cache, s.x.data());
    cache.set_mtp_size(k, pos0 + off + rows);
    if (hidden_out) std::memcpy(hidden_out->as<float>() + off * H, s.x.data(), size_t(rows * H) * sizeof(float));
    head_logits(c, m.shared_head_norm, m.shared_head, o, s, rows, off, off + rows == n, logits);
  }
}

}  // namespace dsv3
