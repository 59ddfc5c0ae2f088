// Trainable parameters: every tensor of hf_tensor_specs(config) — main layers and MTP modules — in one
// contiguous arena of T (float for training, double for the gradient checks), with views by Hugging Face
// name and as structs per layer. Gradients (and later optimizer moments) are arenas of the same layout,
// so "the gradient of X" is at the same offset as X.
//
// Shared storage (TR §2.2: each MTP module shares the embedding and the output head with the main
// model): with share_mtp_embedding_head, `model.layers.{N+k}.embed_tokens.weight` and
// `...shared_head.head.weight` are aliases of `model.embed_tokens.weight` and `lm_head.weight` —
// one storage, one gradient (the sum of both uses). They are written as copies on save, as DeepSeek's
// checkpoints store them; on load the main model's tensors are read and the copies ignored.
// With tie_word_embeddings, lm_head is likewise the embedding.
//
// e_score_correction_bias is stored here too (it is part of the checkpoint), but it is not trained by
// gradient (its gradient is identically zero): optimizers must skip tensors with !trainable() — no
// Adam update and no weight decay — and update it with the load-balancing rule instead (SPEC.md §2).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"
#include "io/hf_names.h"
#include "model/config.h"

namespace dsv3 {

struct ParamInfo {
  std::string name;  // Hugging Face name
  Shape shape;
  TensorRole role;
  int64_t offset = 0;  // elements from the start of the arena
  int64_t numel = 0;
  bool alias = false;    // storage shared with `alias_of` (listed earlier): skip it in optimizers and norms
  std::string alias_of;  // empty unless alias
  bool trainable() const { return role != TensorRole::router_bias; }
};

struct ParamLayout {
  ModelConfig config;
  bool share_mtp_embedding_head = true;
  std::vector<ParamInfo> tensors;  // hf_tensor_specs order
  int64_t total = 0;               // elements in the arena (aliases take none)
  std::unordered_map<std::string, size_t> index;  // name -> position in tensors

  const ParamInfo* find(const std::string& name) const;
  const ParamInfo& at(const std::string& name) const;  // throws naming the tensor
};

std::shared_ptr<const ParamLayout> make_param_layout(const ModelConfig& config, bool share_mtp_embedding_head = true);

// An arena of T laid out by a ParamLayout (parameters, gradients, optimizer state), zero-filled.
template <typename T>
class TrainParams {
 public:
  TrainParams() = default;
  explicit TrainParams(std::shared_ptr<const ParamLayout> layout);
  explicit TrainParams(const ModelConfig& config, bool share_mtp_embedding_head = true)
      : TrainParams(make_param_layout(config, share_mtp_embedding_head)) {}

  const ParamLayout& layout() const { return *layout_; }
  std::shared_ptr<const ParamLayout> layout_ptr() const { return layout_; }
  const ModelConfig& config() const { return layout_->config; }
  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }
  int64_t size() const { return layout_ ? layout_->total : 0; }
  T* get(const std::string& name) { return data() + layout_->at(name).offset; }
  const T* get(const std::string& name) const { return data() + layout_->at(name).offset; }
  void zero();

 private:
  std::shared_ptr<const ParamLayout> layout_;
  std::unique_ptr<T[], void (*)(void*)> data_{nullptr, std::free};
};

// ---- Structured views (pointers into an arena; the same struct serves parameters and gradients) ----

template <typename T>
struct MlpParams {  // SwiGLU: down(silu(gate x) ⊙ up x)
  T* gate_proj = nullptr;  // [inter, H]
  T* up_proj = nullptr;    // [inter, H]
  T* down_proj = nullptr;  // [H, inter]
  int64_t inter = 0;
};

template <typename T>
struct AttnParams {
  T* q_a_proj = nullptr;            // [q_lora, H]          (q_lora_rank set)
  T* q_a_layernorm = nullptr;       // [q_lora]
  T* q_b_proj = nullptr;            // [heads·qk, q_lora]
  T* q_proj = nullptr;              // [heads·qk, H]        (q_lora_rank null)
  T* kv_a_proj_with_mqa = nullptr;  // [kv_lora + rope, H]
  T* kv_a_layernorm = nullptr;      // [kv_lora]
  T* kv_b_proj = nullptr;           // [heads·(nope+v), kv_lora]
  T* o_proj = nullptr;              // [H, heads·v]
};

template <typename T>
struct MoeParams {
  T* gate = nullptr;             // [E, H] router
  T* correction_bias = nullptr;  // [E] (noaux_tc only; selection only, never differentiated)
  std::vector<MlpParams<T>> experts;
  bool has_shared = false;
  MlpParams<T> shared;  // n_shared·moe_inter wide
};

template <typename T>
struct BlockParams {
  T* input_layernorm = nullptr;  // [H]
  AttnParams<T> attn;
  T* post_attention_layernorm = nullptr;  // [H]
  bool is_moe = false;
  MlpParams<T> mlp;  // dense layers
  MoeParams<T> moe;  // MoE layers
};

template <typename T>
struct MtpParams {
  T* embed_tokens = nullptr;  // [V, H] (the main embedding when shared)
  T* enorm = nullptr;         // [H]
  T* hnorm = nullptr;         // [H]
  T* eh_proj = nullptr;       // [H, 2H]
  BlockParams<T> block;
  T* shared_head_norm = nullptr;  // [H]
  T* shared_head = nullptr;       // [V, H] (lm_head when shared)
};

template <typename T>
struct ModelParams {
  T* embed_tokens = nullptr;  // [V, H]
  std::vector<BlockParams<T>> layers;
  T* norm = nullptr;     // [H]
  T* lm_head = nullptr;  // [V, H] (the embedding when tie_word_embeddings)
  std::vector<MtpParams<T>> mtp;
};

template <typename T>
ModelParams<T> model_params(TrainParams<T>& arena);

// ---- Initialisation, loading, saving ----

struct TrainInitOptions {
  double init_std = 0.006;  // TR §4.2 (SPEC.md §2)
};

// N(0, init_std²) for the embedding, head, projections and router; 1 for RMSNorm weights; 0 for the
// correction bias. Element i of a tensor depends only on (seed, tensor name, i): the result does not
// depend on the thread count.
template <typename T>
void init_random(TrainParams<T>& params, uint64_t seed, const TrainInitOptions& options = {});

// Reads every tensor of the checkpoint directory `dir` (config.json must match params.config() in every
// field that shapes tensors). F32/BF16/F16 are converted, F8_E4M3 weights dequantized with their
// 128×128 block scales. Errors name the file and tensor.
template <typename T>
void load_params(TrainParams<T>& params, const std::string& dir);

// Convenience: layout from dir/config.json (quantization_config dropped), then load_params.
template <typename T>
TrainParams<T> load_train_params(const std::string& dir, bool share_mtp_embedding_head = true);

// Writes dir/config.json and the safetensors (one file, or shards of at most max_shard_bytes) in
// Hugging Face layout: every tensor of hf_tensor_specs, MTP layers as model.layers.{N+k}, in `dtype`
// (F32 or BF16; the correction bias always F32). `dsv3 generate/logits/info` load the result.
template <typename T>
void save_params(const TrainParams<T>& params, const std::string& dir, DType dtype,
                 size_t max_shard_bytes = size_t(2) << 30);

}  // namespace dsv3
