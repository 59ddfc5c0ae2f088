#include "train/train_model.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "core/error.h"
#include "core/hash.h"
#include "core/parallel.h"
#include "io/safetensors.h"
#include "ops/linear.h"

namespace dsv3 {

// ---- Layout ----

const ParamInfo* ParamLayout::find(const std::string& name) const {
  const auto it = index.find(name);
  return it == index.end() ? nullptr : &tensors[it->second];
}

const ParamInfo& ParamLayout::at(const std::string& name) const {
  const ParamInfo* p = find(name);
  DSV3_CHECK(p != nullptr, "[train] no parameter named ", name, " in this model (", tensors.size(), " tensors)");
  return *p;
}

std::shared_ptr<const ParamLayout> make_param_layout(const ModelConfig& config, bool share_mtp_embedding_head) {
  auto layout = std::make_shared<ParamLayout>();
  layout->config = config;
  layout->config.quantization_config = QuantizationConfig{};  // training keeps full-precision weights
  layout->share_mtp_embedding_head = share_mtp_embedding_head;
  const std::string head = config.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
  auto& index = layout->index;
  for (HfTensorSpec& spec : hf_tensor_specs(config)) {
    ParamInfo p;
    p.name = std::move(spec.name);
    p.shape = std::move(spec.shape);
    p.role = spec.role;
    p.numel = shape_numel(p.shape);
    if (share_mtp_embedding_head && p.name.rfind("model.layers.", 0) == 0) {
      const auto ends_with = [&](const std::string& suffix) {
        return p.name.size() > suffix.size() && p.name.compare(p.name.size() - suffix.size(), suffix.size(), suffix) == 0;
      };
      if (ends_with(".embed_tokens.weight")) p.alias_of = "model.embed_tokens.weight";
      if (ends_with(".shared_head.head.weight")) p.alias_of = head;
    }
    if (!p.alias_of.empty()) {
      const ParamInfo& target = layout->tensors.at(index.at(p.alias_of));
      DSV3_CHECK(target.shape == p.shape, "[train] ", p.name, " ", shape_str(p.shape), " cannot share storage with ",
                 target.name, " ", shape_str(target.shape));
      p.alias = true;
      p.offset = target.offset;
    } else {
      // 16-element (64-byte for f32) alignment of every tensor.
      p.offset = (layout->total + 15) / 16 * 16;
      layout->total = p.offset + p.numel;
    }
    index[p.name] = layout->tensors.size();
    layout->tensors.push_back(std::move(p));
  }
  return layout;
}

// ---- Arena ----

template <typename T>
TrainParams<T>::TrainParams(std::shared_ptr<const ParamLayout> layout) : layout_(std::move(layout)) {
  const size_t bytes = (size_t(layout_->total) * sizeof(T) + 63) / 64 * 64;
  T* p = static_cast<T*>(std::aligned_alloc(64, std::max<size_t>(bytes, 64)));
  DSV3_CHECK(p != nullptr, "[train] out of memory allocating ", bytes, " bytes of parameters");
  data_ = std::unique_ptr<T[], void (*)(void*)>(p, std::free);
  zero();
}

template <typename T>
void TrainParams<T>::zero() {
  T* d = data();
  parallel_for(size(), 1 << 16, [&](int64_t b, int64_t e) { std::memset(d + b, 0, size_t(e - b) * sizeof(T)); });
}

// ---- Views ----

namespace {

template <typename T>
class Viewer {
 public:
  explicit Viewer(TrainParams<T>& a) : a_(a) {}
  T* operator()(const std::string& name) { return a_.get(name); }
  T* optional(const std::string& name) { return a_.layout().find(name) ? a_.get(name) : nullptr; }
  MlpParams<T> mlp(const std::string& prefix) {
    MlpParams<T> m;
    m.gate_proj = (*this)(prefix + "gate_proj.weight");
    m.up_proj = (*this)(prefix + "up_proj.weight");
    m.down_proj = (*this)(prefix + "down_proj.weight");
    m.inter = a_.layout().at(prefix + "gate_proj.weight").shape[0];
    return m;
  }
  BlockParams<T> block(int64_t layer) {
    const ModelConfig& c = a_.config();
    const std::string p = cat("model.layers.", layer, ".");
    BlockParams<T> b;
    b.input_layernorm = (*this)(p + "input_layernorm.weight");
    b.post_attention_layernorm = (*this)(p + "post_attention_layernorm.weight");
    const std::string s = p + "self_attn.";
    AttnParams<T>& at = b.attn;
    if (c.q_lora_rank) {
      at.q_a_proj = (*this)(s + "q_a_proj.weight");
      at.q_a_layernorm = (*this)(s + "q_a_layernorm.weight");
      at.q_b_proj = (*this)(s + "q_b_proj.weight");
    } else {
      at.q_proj = (*this)(s + "q_proj.weight");
    }
    at.kv_a_proj_with_mqa = (*this)(s + "kv_a_proj_with_mqa.weight");
    at.kv_a_layernorm = (*this)(s + "kv_a_layernorm.weight");
    at.kv_b_proj = (*this)(s + "kv_b_proj.weight");
    at.o_proj = (*this)(s + "o_proj.weight");
    b.is_moe = c.is_moe_layer(layer);
    if (!b.is_moe) {
      b.mlp = mlp(p + "mlp.");
      return b;
    }
    b.moe.gate = (*this)(p + "mlp.gate.weight");
    b.moe.correction_bias = optional(p + "mlp.gate.e_score_correction_bias");
    for (int64_t e = 0; e < c.n_routed_experts; ++e) b.moe.experts.push_back(mlp(cat(p, "mlp.experts.", e, ".")));
    b.moe.has_shared = c.n_shared_experts > 0;
    if (b.moe.has_shared) b.moe.shared = mlp(p + "mlp.shared_experts.");
    return b;
  }

 private:
  TrainParams<T>& a_;
};

}  // namespace

template <typename T>
ModelParams<T> model_params(TrainParams<T>& arena) {
  const ModelConfig& c = arena.config();
  Viewer<T> v(arena);
  ModelParams<T> m;
  m.embed_tokens = v("model.embed_tokens.weight");
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) m.layers.push_back(v.block(l));
  m.norm = v("model.norm.weight");
  m.lm_head = c.tie_word_embeddings ? m.embed_tokens : v("lm_head.weight");
  for (int64_t k = 0; k < c.num_nextn_predict_layers; ++k) {
    const int64_t layer = c.num_hidden_layers + k;
    const std::string p = cat("model.layers.", layer, ".");
    MtpParams<T> t;
    t.embed_tokens = v(p + "embed_tokens.weight");
    t.enorm = v(p + "enorm.weight");
    t.hnorm = v(p + "hnorm.weight");
    t.eh_proj = v(p + "eh_proj.weight");
    t.block = v.block(layer);
    t.shared_head_norm = v(p + "shared_head.norm.weight");
    t.shared_head = v(p + "shared_head.head.weight");
    m.mtp.push_back(std::move(t));
  }
  return m;
}

// ---- Random init ----

namespace {

// Element i of a tensor: Box-Muller on two uniforms drawn from a hash of (tensor seed, i / 2).
double normal_at(uint64_t seed, int64_t i) {
  const uint64_t h = splitmix64(seed ^ splitmix64(uint64_t(i / 2)));
  const double u1 = (double(h >> 11) + 1.0) / 9007199254740993.0;  // (0, 1]
  const double u2 = double(splitmix64(h) >> 11) / 9007199254740992.0;
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double angle = 6.283185307179586 * u2;
  return (i % 2 == 0) ? r * std::cos(angle) : r * std::sin(angle);
}

}  // namespace

template <typename T>
void init_random(TrainParams<T>& params, uint64_t seed, const TrainInitOptions& options) {
  DSV3_CHECK(options.init_std >= 0 && std::isfinite(options.init_std), "[train] init_std must be >= 0, got ",
             options.init_std);
  for (const ParamInfo& p : params.layout().tensors) {
    if (p.alias) continue;
    T* out = params.data() + p.offset;
    const uint64_t tensor_seed = splitmix64(seed ^ fnv1a64(p.name));
    switch (p.role) {
      case TensorRole::norm:
        for (int64_t i = 0; i < p.numel; ++i) out[i] = T(1);
        break;
      case TensorRole::router_bias:
        for (int64_t i = 0; i < p.numel; ++i) out[i] = T(0);
        break;
      default:
        parallel_for(p.numel, 1 << 14, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) out[i] = T(options.init_std * normal_at(tensor_seed, i));
        });
    }
  }
}

// ---- Load ----

template <typename T>
void load_params(TrainParams<T>& params, const std::string& dir) {
  const TensorStore store = TensorStore::open_dir(dir);
  const ModelConfig file_config = load_model_config(dir + "/config.json");
  const QuantizationConfig& q = file_config.quantization_config;
  for (const ParamInfo& p : params.layout().tensors) {
    if (p.alias) continue;
    const TensorView v = store.get(p.name, p.shape);
    T* out = params.data() + p.offset;
    if (v.dtype == DType::F8_E4M3) {
      DSV3_CHECK(q.fp8 && p.shape.size() == 2, "[train] tensor ", p.name, " in ", store.file_of(p.name),
                 " is F8_E4M3 but ", dir, "/config.json has no fp8 quantization_config");
      const std::string scale_name = scale_inv_name(p.name);
      DSV3_CHECK(store.has(scale_name), "[train] FP8 tensor ", p.name, " in ", store.file_of(p.name), " has no ",
                 scale_name);
      const int64_t rows = p.shape[0], cols = p.shape[1], block = q.block_rows;
      const TensorView s = store.get(scale_name, {(rows + block - 1) / block, (cols + block - 1) / block});
      DSV3_CHECK(s.dtype == DType::F32, "[train] ", scale_name, " has dtype ", dtype_name(s.dtype), "; expected F32");
      const LinearWeight w{v.dtype, rows, cols, v.data, s.as<float>(), block};
      parallel_for(rows, 16, [&](int64_t b, int64_t e) {
        std::vector<float> row(static_cast<size_t>(cols));
        for (int64_t r = b; r < e; ++r) {
          dequantize_rows(w, r, r + 1, row.data());
          for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = T(row[size_t(c)]);
        }
      });
      continue;
    }
    DSV3_CHECK(v.dtype == DType::F32 || v.dtype == DType::BF16 || v.dtype == DType::F16 || v.dtype == DType::F64,
               "[train] tensor ", p.name, " in ", store.file_of(p.name), " has dtype ", dtype_name(v.dtype),
               "; expected F32, BF16, F16, F64 or F8_E4M3");
    parallel_for(p.numel, 1 << 14, [&](int64_t b, int64_t e) {
      if (v.dtype == DType::F64)  // keep doubles exact
        for (int64_t i = b; i < e; ++i) out[i] = T(v.as<double>()[i]);
      else
        for (int64_t i = b; i < e; ++i) out[i] = T(load_as_f32(v.data, v.dtype, size_t(i)));
    });
  }
}

template <typename T>
TrainParams<T> load_train_params(const std::string& dir, bool share_mtp_embedding_head) {
  ModelConfig config = load_model_config(dir + "/config.json");
  TrainParams<T> params(config, share_mtp_embedding_head);
  load_params(params, dir);
  return params;
}

// ---- Save ----

template <typename T>
void save_params(const TrainParams<T>& params, const std::string& dir, DType dtype, size_t max_shard_bytes) {
  DSV3_CHECK(dtype == DType::F32 || dtype == DType::BF16, "[train] checkpoints are written in F32 or BF16, not ",
             dtype_name(dtype));
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  DSV3_CHECK(!ec, "[train] cannot create directory ", dir, ": ", ec.message());
  SafetensorsWriter writer;
  writer.set_metadata("format", "pt");
  for (const ParamInfo& p : params.layout().tensors) {
    const T* src = params.data() + p.offset;
    const DType out_dtype = p.role == TensorRole::router_bias ? DType::F32 : dtype;
    Tensor t(out_dtype, p.shape);
    parallel_for(p.numel, 1 << 14, [&](int64_t b, int64_t e) {
      if (out_dtype == DType::F32)
        for (int64_t i = b; i < e; ++i) t.as<float>()[i] = float(src[i]);
      else
        for (int64_t i = b; i < e; ++i) t.as<uint16_t>()[i] = f32_to_bf16(float(src[i]));
    });
    writer.add(p.name, std::move(t));
  }
  writer.write_sharded(dir, max_shard_bytes);
  std::ofstream config_file(dir + "/config.json");
  config_file << model_config_to_json(params.config());
  DSV3_CHECK(config_file.good(), "[train] cannot write ", dir, "/config.json");
}

#define DSV3_INSTANTIATE(T)                                                                          \
  template class TrainParams<T>;                                                                     \
  template ModelParams<T> model_params(TrainParams<T>&);                                             \
  template void init_random(TrainParams<T>&, uint64_t, const TrainInitOptions&);                     \
  template void load_params(TrainParams<T>&, const std::string&);                                    \
  template TrainParams<T> load_train_params(const std::string&, bool);                               \
  template void save_params(const TrainParams<T>&, const std::string&, DType, size_t);
DSV3_INSTANTIATE(float)
DSV3_INSTANTIATE(double)
#undef DSV3_INSTANTIATE

}  // namespace dsv3
