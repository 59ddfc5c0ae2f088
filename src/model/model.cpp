#include "model/model.h"

#include <algorithm>
#include <cstring>
#include <span>

#include "core/error.h"
#include "core/parallel.h"
#include "core/profiler.h"
#include "model/mtp.h"
#include "model/rope.h"
#include "model/transformer.h"
#include "ops/ops.h"

namespace dsv3 {

namespace {

void ensure_shape(Tensor* t, const Shape& shape) {
  if (t->empty() || t->dtype() != DType::F32 || t->shape() != shape) *t = Tensor(DType::F32, shape);
}

// Tokens per chunk for an input of n: at most prefill_chunk, in equal chunks (539 tokens as 270 + 269,
// not 512 + 27: a short chunk after a long one pays attention over the whole context for few rows).
int64_t chunk_size(const ForwardOptions& o, int64_t n) {
  if (o.prefill_chunk <= 0 || n <= o.prefill_chunk) return n;
  const int64_t chunks = (n + o.prefill_chunk - 1) / o.prefill_chunk;
  return (n + chunks - 1) / chunks;
}

// Rope tables of every row of the chunk, each at its segment's positions; the context over them.
ChunkContext make_context(const ModelWeights& w, const ForwardOptions& o, Scratch& s,
                          std::span<const ChunkSegment> segments, int64_t n) {
  const int64_t half = w.rope.dim / 2;
  for (const ChunkSegment& seg : segments)
    rope_tables(w.rope, seg.pos, seg.n, s.rope_cos.data() + seg.row * half, s.rope_sin.data() + seg.row * half);
  ChunkContext c;
  c.segments = segments.data();
  c.num_segments = int64_t(segments.size());
  c.n = n;
  c.rope_cos = s.rope_cos.data();
  c.rope_sin = s.rope_sin.data();
  c.softmax_scale = w.softmax_scale;
  c.precision = o.precision;
  c.attention = o.attention;
  return c;
}

// The final norm of the chunk's rows (into s.normed) and the head: every row of the items that want
// all logits (options.all_logits: straight into their output), and the last rows of the others plus
// every row of the items with logits_per_row gathered into one product, so the head's weights are read
// once per step.
void head_logits(const ModelConfig& config, const Tensor& norm, const LinearWeight& head, const ForwardOptions& o,
                 Scratch& s, const BatchItem* items, std::span<const ChunkSegment> segments) {
  DSV3_ZONE("head");
  const int64_t H = config.hidden_size, V = head.rows;
  const int64_t n = segments.back().row + segments.back().n;
  rmsnorm(s.x.data(), norm.as<float>(), float(config.rms_norm_eps), s.normed.data(), n, H);
  int64_t gathered = 0;
  float* only_output = nullptr;  // the output of the gathered rows when they are one item's
  int64_t gathering_items = 0;
  for (size_t i = 0; i < segments.size(); ++i) {
    if (items[i].logits == nullptr) continue;
    const ChunkSegment& seg = segments[i];
    if (o.all_logits) {
      linear(head, s.normed.data() + seg.row * H, items[i].logits, seg.n, o.precision);
      continue;
    }
    const int64_t first = items[i].logits_per_row ? seg.row : seg.row + seg.n - 1;
    const int64_t rows = seg.row + seg.n - first;
    std::memcpy(s.branch.data() + gathered * H, s.normed.data() + first * H, size_t(rows * H) * sizeof(float));
    gathered += rows;
    only_output = items[i].logits;
    ++gathering_items;
  }
  if (gathered == 0) return;
  if (gathering_items == 1) {
    linear(head, s.branch.data(), only_output, gathered, o.precision);
    return;
  }
  if (int64_t(s.head_out.size()) < gathered * V) s.head_out.resize(size_t(gathered * V));
  linear(head, s.branch.data(), s.head_out.data(), gathered, o.precision);
  int64_t r = 0;
  for (size_t i = 0; i < segments.size(); ++i) {
    if (items[i].logits == nullptr) continue;
    const int64_t rows = items[i].logits_per_row ? segments[i].n : 1;
    std::memcpy(items[i].logits, s.head_out.data() + r * V, size_t(rows * V) * sizeof(float));
    r += rows;
  }
}

}  // namespace

namespace {
bool g_weights_into_memory = true;
}  // namespace

void set_load_weights_into_memory(bool on) { g_weights_into_memory = on; }

std::unique_ptr<Model> load_model(const std::string& dir) {
  auto model = std::make_unique<Model>();
  model->config = load_model_config(dir + "/config.json");
  model->store = TensorStore::open_dir(dir);
  // Weights are streamed from memory on every step: on 2 MB pages where they fit (see
  // SafetensorsFile::load_into_memory; +0.5-1.5 s of loading for 2.2 GB on a 2-core Zen 5, and steps
  // ~25% faster), else from the file mapping.
  if (g_weights_into_memory) model->store.load_into_memory_if_it_fits();
  model->weights = bind_weights(model->config, model->store);
  return model;
}

void forward_batch(const Model& model, BatchItem* items, int64_t num_items, const ForwardOptions& o,
                   Scratch& s) {
  DSV3_ZONE("forward");
  const ModelConfig& c = model.config;
  const ModelWeights& w = model.weights;
  const int64_t H = c.hidden_size;
  DSV3_CHECK(num_items > 0, "[forward] no sequences to process");
  thread_local std::vector<ChunkSegment> segments;  // reused: decode steps do not allocate
  segments.resize(static_cast<size_t>(num_items));
  int64_t rows = 0, most_positions = 0;
  for (int64_t i = 0; i < num_items; ++i) {
    const BatchItem& item = items[i];
    DSV3_CHECK(item.cache != nullptr && item.tokens != nullptr && item.n > 0, "[forward] batch item ", i,
               " has no cache or no tokens");
    const int64_t pos = item.cache->size();
    DSV3_CHECK(pos + item.n <= item.cache->capacity(), "[forward] ", pos, " cached + ", item.n,
               " new tokens exceed the KV cache capacity of ", item.cache->capacity(),
               "; create the KVCache with a larger max_tokens.");
    for (int64_t j = 0; j < i; ++j)
      DSV3_CHECK(items[j].cache != item.cache, "[forward] batch items ", j, " and ", i, " share a KV cache");
    segments[size_t(i)] = ChunkSegment{item.cache, pos, item.n, rows};
    rows += item.n;
    most_positions = std::max(most_positions, item.cache->capacity());
  }
  s.reserve(c, rows, most_positions, num_threads());
  const ChunkContext ctx = make_context(w, o, s, segments, rows);
  for (int64_t i = 0; i < num_items; ++i)
    embedding_gather(w.embed_tokens, items[i].tokens, items[i].n, s.x.data() + segments[size_t(i)].row * H);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) block_forward(c, w.layers[size_t(l)], l, ctx, s, s.x.data());
  for (const ChunkSegment& seg : segments) seg.cache->set_size(seg.pos + seg.n);
  head_logits(c, w.norm, w.lm_head, o, s, items, segments);
  for (int64_t i = 0; i < num_items; ++i)
    if (items[i].hidden)
      std::memcpy(items[i].hidden, s.normed.data() + segments[size_t(i)].row * H,
                  size_t(items[i].n * H) * sizeof(float));
}

void prepare_forward(const Model& model, KVCache& cache, int64_t n_tokens, const ForwardOptions& options) {
  const int64_t chunk = chunk_size(options, n_tokens);
  if (chunk > 0) cache.scratch().reserve(model.config, chunk, cache.capacity(), num_threads());
}

void forward(const Model& model, KVCache& cache, const int32_t* tokens, int64_t n, const ForwardOptions& o,
             Tensor* logits, Tensor* hidden) {
  const int64_t H = model.config.hidden_size, V = model.weights.lm_head.rows;
  DSV3_CHECK(n > 0, "[forward] no tokens to process");
  DSV3_CHECK(cache.size() + n <= cache.capacity(), "[forward] ", cache.size(), " cached + ", n, " new tokens exceed "
             "the KV cache capacity of ", cache.capacity(), "; create the KVCache with a larger max_tokens.");
  if (logits) ensure_shape(logits, {o.all_logits ? n : 1, V});
  if (hidden) ensure_shape(hidden, {n, H});
  const int64_t chunk = chunk_size(o, n);
  for (int64_t off = 0; off < n; off += chunk) {
    BatchItem item;
    item.cache = &cache;
    item.tokens = tokens + off;
    item.n = std::min(chunk, n - off);
    const bool last = off + item.n == n;
    if (logits && (o.all_logits || last)) item.logits = logits->as<float>() + (o.all_logits ? off * V : 0);
    if (hidden) item.hidden = hidden->as<float>() + off * H;
    forward_batch(model, &item, 1, o, cache.scratch());
  }
}

void mtp_forward_batch(const Model& model, int k, MtpItem* items, int64_t num_items, const ForwardOptions& o,
                       Scratch& s) {
  DSV3_ZONE("mtp");
  const ModelConfig& c = model.config;
  const ModelWeights& w = model.weights;
  DSV3_CHECK(k >= 0 && size_t(k) < w.mtp.size(), "[mtp] module ", k, " requested; the checkpoint has ", w.mtp.size(),
             " (num_nextn_predict_layers)");
  DSV3_CHECK(num_items > 0, "[mtp] no sequences to process");
  const MtpWeights& m = w.mtp[size_t(k)];
  DSV3_CHECK(o.head_rows >= 0 && o.head_rows <= m.shared_head.rows, "[mtp] head_rows ", o.head_rows,
             " outside [0, ", m.shared_head.rows, "]");
  LinearWeight head = m.shared_head;
  if (o.head_rows > 0) head.rows = o.head_rows;  // the first rows: a prefix of the row-major weight
  const int64_t H = c.hidden_size, layer = c.num_hidden_layers + k;
  thread_local std::vector<ChunkSegment> segments;
  thread_local std::vector<BatchItem> outputs;  // the head's view of the items: their logits
  segments.resize(size_t(num_items));
  outputs.assign(size_t(num_items), BatchItem{});
  int64_t rows = 0, most_positions = 0;
  for (int64_t i = 0; i < num_items; ++i) {
    const MtpItem& item = items[i];
    DSV3_CHECK(item.cache != nullptr && item.n > 0 && item.hidden != nullptr && item.next_tokens != nullptr,
               "[mtp] batch item ", i, " needs a cache, hidden states and next tokens");
    const int64_t pos = item.cache->mtp_size(k);
    DSV3_CHECK(pos + item.n <= item.cache->capacity(), "[mtp] ", pos, " cached + ", item.n,
               " new positions exceed the KV cache capacity of ", item.cache->capacity());
    segments[size_t(i)] = ChunkSegment{item.cache, pos, item.n, rows};
    outputs[size_t(i)].n = item.n;
    outputs[size_t(i)].logits = item.logits;
    rows += item.n;
    most_positions = std::max(most_positions, item.cache->capacity());
  }
  s.reserve(c, rows, most_positions, num_threads());
  const ChunkContext ctx = make_context(w, o, s, segments, rows);
  for (int64_t i = 0; i < num_items; ++i) {
    const int64_t row = segments[size_t(i)].row;
    embedding_gather(m.embed_tokens, items[i].next_tokens, items[i].n, s.x.data() + row * H);
    // mtp_input reads each row's norms before its projection writes: rows of one item at a time.
    mtp_input(c, m, s.x.data() + row * H, items[i].hidden, items[i].n, o.precision, s.concat.data(),
              s.x.data() + row * H);
  }
  block_forward(c, m.block, layer, ctx, s, s.x.data());
  for (int64_t i = 0; i < num_items; ++i) {
    const ChunkSegment& seg = segments[size_t(i)];
    seg.cache->set_mtp_size(k, seg.pos + seg.n);
    if (items[i].hidden_out)
      std::memcpy(items[i].hidden_out, s.x.data() + seg.row * H, size_t(seg.n * H) * sizeof(float));
  }
  head_logits(c, m.shared_head_norm, head, o, s, outputs.data(), segments);
}

void mtp_forward(const Model& model, int k, KVCache& cache, const float* hidden, const int32_t* next_tokens, int64_t n,
                 const ForwardOptions& o, Tensor* logits, Tensor* hidden_out) {
  const ModelConfig& c = model.config;
  DSV3_CHECK(k >= 0 && size_t(k) < model.weights.mtp.size(), "[mtp] module ", k, " requested; the checkpoint has ",
             model.weights.mtp.size(), " (num_nextn_predict_layers)");
  DSV3_CHECK(n > 0, "[mtp] no tokens to process");
  DSV3_CHECK(hidden != nullptr && next_tokens != nullptr, "[mtp] hidden states and next tokens are required");
  const int64_t H = c.hidden_size;
  const int64_t V = o.head_rows > 0 ? o.head_rows : model.weights.mtp[size_t(k)].shared_head.rows;
  if (logits) ensure_shape(logits, {o.all_logits ? n : 1, V});
  if (hidden_out) ensure_shape(hidden_out, {n, H});
  const int64_t chunk = chunk_size(o, n);
  for (int64_t off = 0; off < n; off += chunk) {
    MtpItem item;
    item.cache = &cache;
    item.hidden = hidden + off * H;
    item.next_tokens = next_tokens + off;
    item.n = std::min(chunk, n - off);
    const bool last = off + item.n == n;
    if (logits && (o.all_logits || last)) item.logits = logits->as<float>() + (o.all_logits ? off * V : 0);
    if (hidden_out) item.hidden_out = hidden_out->as<float>() + off * H;
    mtp_forward_batch(model, k, &item, 1, o, cache.scratch());
  }
}

}  // namespace dsv3
