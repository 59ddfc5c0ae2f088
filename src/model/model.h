// The public model API: load a Hugging Face DeepSeek-V3/V2 checkpoint directory and run it.
//
//   auto model = load_model(dir);                 // config.json + safetensors, everything validated
//   KVCache cache(model->config, max_tokens);
//   forward(*model, cache, prompt.data(), prompt.size(), {}, &logits);   // prefill (chunked)
//   forward(*model, cache, &next, 1, {}, &logits);                        // decode
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/tensor.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "model/mla.h"
#include "model/weights.h"
#include "ops/linear.h"

namespace dsv3 {

struct Model {
  ModelConfig config;
  TensorStore store;  // owns the mappings (or in-memory copies) the weights point into
  ModelWeights weights;
};

// Whether load_model copies the weights into memory on 2 MB pages when they fit in RAM (the default;
// steps read them faster) or reads them through the file mapping (`dsv3 --mmap`: starts sooner).
void set_load_weights_into_memory(bool on);

// Reads dir/config.json and the safetensors files of dir; binds and validates every tensor.
std::unique_ptr<Model> load_model(const std::string& dir);

struct ForwardOptions {
  Precision precision = Precision::bf16;  // activations of the projections (f32: exact, for checks)
  AttentionImpl attention = AttentionImpl::absorbed;
  int64_t prefill_chunk = 512;  // most tokens per chunk (longer inputs split into equal chunks); <= 0: all at once
  bool all_logits = false;      // logits for every position instead of the last one
  // mtp_forward only: logits for ids [0, head_rows) alone (0: the whole vocabulary). A draft over the
  // first ids — in a BPE vocabulary the earliest merges, i.e. the most frequent tokens — reads a fraction
  // of the head's weights; speculative decoding stays exact whatever the draft (speculative.h).
  int64_t head_rows = 0;
};

// Grows the cache's scratch for forward passes of up to n_tokens (in chunks of options.prefill_chunk),
// so the first one does not spend its time faulting in fresh buffers (~150 ms for a 512-token chunk of
// v3-1.5g on a 2-core VM) — a server or chat pays it once. generate() calls it before timing.
void prepare_forward(const Model& model, KVCache& cache, int64_t n_tokens, const ForwardOptions& options);

// Processes tokens at positions cache.size() ... cache.size() + n - 1, appends them to the cache, and
// writes logits [n, vocab] (all_logits) or [1, vocab] (last position). `hidden` (optional) receives the
// final hidden states [n, H] after the final RMSNorm — what the MTP modules consume (see mtp.h).
// Output tensors are reallocated only when their shape changes.
void forward(const Model& model, KVCache& cache, const int32_t* tokens, int64_t n, const ForwardOptions& options,
             Tensor* logits, Tensor* hidden = nullptr);

// One sequence's part of a batched step.
struct BatchItem {
  KVCache* cache = nullptr;         // positions cache->size() ... + n - 1 are computed and appended
  const int32_t* tokens = nullptr;  // [n]
  int64_t n = 0;
  float* logits = nullptr;  // [vocab] of the last position ([n, vocab] with all_logits), or null
  float* hidden = nullptr;  // [n, H] final hidden states after the final RMSNorm, or null
  // Logits for every row of this item ([n, vocab]) whatever options.all_logits says, computed in the
  // step's one head product with the other items' rows (speculative verification: n = 2).
  bool logits_per_row = false;
};

// Runs every item's tokens as one chunk: each projection, the dense and shared FFNs and the output head
// read their weights once for all rows, routed experts run once over the rows that chose them, and
// attention runs per sequence over its own cache (sequences never see each other). This is decode for
// many sequences at once (n = 1 each) and the verification step of speculative decoding (n = 2); a
// prompt may ride along (no chunking here: the caller bounds the rows). Results equal forward() item by
// item up to the rounding of kernels that block differently for more rows. `scratch` is used for the
// step's buffers (it may be any cache's scratch, or one the caches share). prefill_chunk is ignored.
void forward_batch(const Model& model, BatchItem* items, int64_t num_items, const ForwardOptions& options,
                   Scratch& scratch);

// MTP module k (0-based) at positions cache.mtp_size(k) ... + n - 1:
// h' = eh_proj([enorm(Emb(next_tokens)); hnorm(hidden)]) -> block -> shared_head.norm -> shared head.
// hidden[i] is forward()'s hidden output at position p_i, next_tokens[i] the token at p_i + 1; the
// logits predict the token at p_i + 2 + k. hidden_out (optional) receives the block output [n, H]
// (before shared_head.norm), the input of module k + 1.
void mtp_forward(const Model& model, int k, KVCache& cache, const float* hidden, const int32_t* next_tokens, int64_t n,
                 const ForwardOptions& options, Tensor* logits, Tensor* hidden_out = nullptr);

// One sequence's part of a batched MTP step.
struct MtpItem {
  KVCache* cache = nullptr;              // MTP positions cache->mtp_size(k) ... + n - 1 are computed
  const float* hidden = nullptr;         // [n, H] forward()'s hidden output at those positions
  const int32_t* next_tokens = nullptr;  // [n] the token after each
  int64_t n = 0;
  float* logits = nullptr;      // [head rows] of the last position ([n, head rows] with all_logits), or null
  float* hidden_out = nullptr;  // [n, H] block output (the input of module k + 1), or null
};

// mtp_forward for many sequences as one chunk (as forward_batch is for forward): the module's weights
// are read once for all rows, attention runs per sequence over its own MTP rows. prefill_chunk is
// ignored (the caller bounds the rows).
void mtp_forward_batch(const Model& model, int k, MtpItem* items, int64_t num_items, const ForwardOptions& options,
                       Scratch& scratch);

}  // namespace dsv3
