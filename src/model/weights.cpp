#include "model/weights.h"

#include <map>
#include <set>

#include "core/error.h"
#include "core/parallel.h"
#include "io/hf_names.h"

namespace dsv3 {

namespace {

bool is_float_dtype(DType t) { return t == DType::F32 || t == DType::BF16 || t == DType::F16; }

std::string dtype_list(bool allow_fp8) {
  return allow_fp8 ? "F32, BF16, F16 or F8_E4M3" : "F32, BF16 or F16";
}

// Looks tensors up by name in the spec list (so binder and hf_tensor_specs cannot drift apart), fetches
// them from the store with the spec's shape, and records what was bound.
class Binder {
 public:
  Binder(const ModelConfig& config, const TensorStore& store) : config_(config), store_(store) {
    for (HfTensorSpec& spec : hf_tensor_specs(config)) {
      std::string name = spec.name;
      specs_.emplace(std::move(name), std::move(spec));
    }
  }

  bool listed(const std::string& name) const { return specs_.count(name) != 0; }

  TensorView view(const std::string& name, bool allow_fp8) {
    const HfTensorSpec& spec = spec_of(name);
    const TensorView v = store_.get(name, spec.shape);
    DSV3_CHECK(is_float_dtype(v.dtype) || (allow_fp8 && v.dtype == DType::F8_E4M3), "[weights] tensor ", name,
               " in ", store_.file_of(name), " has dtype ", dtype_name(v.dtype), "; expected ", dtype_list(allow_fp8),
               ". The checkpoint does not match what config.json describes.");
    bound_.insert(name);
    return v;
  }

  LinearWeight linear(const std::string& name) {
    const TensorView v = view(name, /*allow_fp8=*/true);
    LinearWeight w;
    w.dtype = v.dtype;
    w.rows = v.dim(0);
    w.cols = v.dim(1);
    w.data = v.data;
    if (v.dtype == DType::F8_E4M3) {
      const QuantizationConfig& q = config_.quantization_config;
      DSV3_CHECK(q.fp8, "[weights] tensor ", name, " in ", store_.file_of(name),
                 " is F8_E4M3 but config.json has no fp8 quantization_config; add "
                 "{\"quant_method\": \"fp8\", \"weight_block_size\": [128, 128]} or use an unquantized checkpoint.");
      DSV3_CHECK(q.block_rows == q.block_cols && q.block_rows > 0, "[weights] quantization_config.weight_block_size [",
                 q.block_rows, ", ", q.block_cols, "] is not supported; dsv3 reads square FP8 blocks (DeepSeek uses [128, 128]).");
      w.block = q.block_rows;
      const std::string scale_name = scale_inv_name(name);
      DSV3_CHECK(store_.has(scale_name), "[weights] FP8 tensor ", name, " in ", store_.file_of(name), " has no ",
                 scale_name, "; every F8_E4M3 weight needs its block scales.");
      const Shape scale_shape{(w.rows + w.block - 1) / w.block, (w.cols + w.block - 1) / w.block};
      const TensorView s = store_.get(scale_name, scale_shape);
      DSV3_CHECK(s.dtype == DType::F32, "[weights] tensor ", scale_name, " in ", store_.file_of(scale_name),
                 " has dtype ", dtype_name(s.dtype), "; expected F32.");
      w.scale_inv = s.as<float>();
    }
    return w;
  }

  Tensor f32_copy(const std::string& name) { return to_f32(view(name, /*allow_fp8=*/false)); }

  // Every listed tensor must have been bound: catches a spec the model forgot to use.
  void check_all_bound() const {
    for (const auto& [name, spec] : specs_) {
      DSV3_CHECK(bound_.count(name), "[weights] internal error: hf_tensor_specs lists ", name,
                 " but the model does not bind it; please report this.");
    }
  }

 private:
  const HfTensorSpec& spec_of(const std::string& name) const {
    auto it = specs_.find(name);
    DSV3_CHECK(it != specs_.end(), "[weights] internal error: tensor ", name,
               " is not in hf_tensor_specs for this config; please report this.");
    return it->second;
  }

  const ModelConfig& config_;
  const TensorStore& store_;
  std::map<std::string, HfTensorSpec> specs_;
  std::set<std::string> bound_;
};

MlpWeights bind_mlp(Binder& b, const std::string& prefix) {
  MlpWeights m;
  m.gate_proj = b.linear(prefix + "gate_proj.weight");
  m.up_proj = b.linear(prefix + "up_proj.weight");
  m.down_proj = b.linear(prefix + "down_proj.weight");
  return m;
}

// Dequantizes a linear weight to f32 (exact for every stored dtype).
Tensor dequantize_f32(const LinearWeight& w) {
  Tensor out(DType::F32, {w.rows, w.cols});
  float* dst = out.as<float>();
  float fp8_value[256];  // E4M3 code -> value
  for (int v = 0; v < 256; ++v) fp8_value[v] = e4m3_to_f32(uint8_t(v));
  parallel_for(w.rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* out = dst + r * w.cols;
      const size_t base = size_t(r * w.cols);
      if (w.dtype == DType::BF16) {
        const uint16_t* src = static_cast<const uint16_t*>(w.data) + base;
        for (int64_t c = 0; c < w.cols; ++c) out[c] = bf16_to_f32(src[c]);
      } else if (w.dtype == DType::F8_E4M3) {
        const uint8_t* src = static_cast<const uint8_t*>(w.data) + base;
        const float* scale = w.scale_inv + (r / w.block) * w.scale_cols();
        for (int64_t c = 0; c < w.cols; ++c) out[c] = fp8_value[src[c]] * scale[c / w.block];
      } else {
        for (int64_t c = 0; c < w.cols; ++c) out[c] = w.at(r, c);
      }
    }
  });
  return out;
}

AttentionWeights bind_attention(Binder& b, const ModelConfig& config, const std::string& prefix) {
  AttentionWeights a;
  a.q_lora = config.q_lora_rank.has_value();
  if (a.q_lora) {
    a.q_a_proj = b.linear(prefix + "q_a_proj.weight");
    a.q_a_layernorm = b.f32_copy(prefix + "q_a_layernorm.weight");
    a.q_b_proj = b.linear(prefix + "q_b_proj.weight");
  } else {
    a.q_proj = b.linear(prefix + "q_proj.weight");
  }
  a.kv_a_proj_with_mqa = b.linear(prefix + "kv_a_proj_with_mqa.weight");
  a.kv_a_layernorm = b.f32_copy(prefix + "kv_a_layernorm.weight");
  a.kv_b_proj = b.linear(prefix + "kv_b_proj.weight");
  a.o_proj = b.linear(prefix + "o_proj.weight");
  a.kv_b_f32 = dequantize_f32(a.kv_b_proj);
  return a;
}

LayerWeights bind_layer(Binder& b, const ModelConfig& config, int64_t layer) {
  const std::string prefix = cat("model.layers.", layer, ".");
  LayerWeights l;
  l.input_layernorm = b.f32_copy(prefix + "input_layernorm.weight");
  l.post_attention_layernorm = b.f32_copy(prefix + "post_attention_layernorm.weight");
  l.attn = bind_attention(b, config, prefix + "self_attn.");
  // MTP layers (index >= num_hidden_layers) follow the same dense/MoE rule as main layers.
  l.is_moe = config.is_moe_layer(layer);
  if (!l.is_moe) {
    l.mlp = bind_mlp(b, prefix + "mlp.");
    return l;
  }
  MoeWeights& m = l.moe;
  m.gate = b.linear(prefix + "mlp.gate.weight");
  DSV3_CHECK(m.gate.dtype != DType::F8_E4M3, "[weights] router ", prefix, "mlp.gate.weight is FP8; DeepSeek keeps the "
             "router gate in BF16/F32 and so does dsv3.");
  const std::string bias_name = prefix + "mlp.gate.e_score_correction_bias";
  if (b.listed(bias_name)) m.correction_bias = b.f32_copy(bias_name);
  m.experts.reserve(size_t(config.n_routed_experts));
  for (int64_t e = 0; e < config.n_routed_experts; ++e)
    m.experts.push_back(bind_mlp(b, cat(prefix, "mlp.experts.", e, ".")));
  m.has_shared = config.n_shared_experts > 0;
  if (m.has_shared) m.shared = bind_mlp(b, prefix + "mlp.shared_experts.");
  return l;
}

}  // namespace

ModelWeights bind_weights(const ModelConfig& config, const TensorStore& store) {
  Binder b(config, store);
  ModelWeights w;
  w.embed_tokens = b.view("model.embed_tokens.weight", /*allow_fp8=*/false);
  w.layers.reserve(size_t(config.num_hidden_layers));
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) w.layers.push_back(bind_layer(b, config, l));
  w.norm = b.f32_copy("model.norm.weight");
  if (b.listed("lm_head.weight")) {
    w.lm_head = b.linear("lm_head.weight");
  } else {
    DSV3_CHECK(config.tie_word_embeddings, "[weights] internal error: no lm_head.weight listed for an untied config");
    w.lm_head = LinearWeight{w.embed_tokens.dtype, w.embed_tokens.dim(0), w.embed_tokens.dim(1), w.embed_tokens.data};
  }
  for (int64_t k = 0; k < config.num_nextn_predict_layers; ++k) {
    const int64_t layer = config.num_hidden_layers + k;
    const std::string prefix = cat("model.layers.", layer, ".");
    MtpWeights m;
    m.embed_tokens = b.view(prefix + "embed_tokens.weight", /*allow_fp8=*/false);
    m.enorm = b.f32_copy(prefix + "enorm.weight");
    m.hnorm = b.f32_copy(prefix + "hnorm.weight");
    m.eh_proj = b.linear(prefix + "eh_proj.weight");
    m.block = bind_layer(b, config, layer);
    m.shared_head_norm = b.f32_copy(prefix + "shared_head.norm.weight");
    m.shared_head = b.linear(prefix + "shared_head.head.weight");
    w.mtp.push_back(std::move(m));
  }
  b.check_all_bound();
  w.rope = rope_frequencies(config);
  w.softmax_scale = attention_softmax_scale(config);
  return w;
}

void embedding_gather(const TensorView& table, const int32_t* tokens, int64_t n, float* out) {
  const int64_t vocab = table.dim(0), hidden = table.dim(1);
  for (int64_t t = 0; t < n; ++t) {
    const int64_t id = tokens[t];
    DSV3_CHECK(id >= 0 && id < vocab, "[embedding] token id ", id, " at index ", t, " is outside the vocabulary [0, ",
               vocab, ")");
    float* dst = out + t * hidden;
    const size_t base = size_t(id * hidden);
    if (table.dtype == DType::BF16) {
      const uint16_t* src = table.as<uint16_t>() + base;
      for (int64_t c = 0; c < hidden; ++c) dst[c] = bf16_to_f32(src[c]);
    } else if (table.dtype == DType::F32) {
      const float* src = table.as<float>() + base;
      for (int64_t c = 0; c < hidden; ++c) dst[c] = src[c];
    } else {
      for (int64_t c = 0; c < hidden; ++c) dst[c] = load_as_f32(table.data, table.dtype, base + size_t(c));
    }
  }
}

}  // namespace dsv3
