#include "model/random_init.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/hash.h"
#include "core/progress.h"
#include "core/parallel.h"
#include "core/tensor.h"
#include "io/hf_names.h"
#include "io/safetensors.h"
#include "ops/quantize.h"

namespace dsv3 {

namespace fs = std::filesystem;

namespace {

// Counter-based normal values: element i of a tensor is a function of (tensor seed, i) only, so any
// range can be generated independently (threads, stripes) with identical results.
// Pair j = i / 2 draws two uniforms from one 64-bit hash; Box-Muller gives elements 2j and 2j+1.
void normal_pair(uint64_t seed, int64_t pair, float std, float* a, float* b) {
  const uint64_t h = splitmix64(seed ^ splitmix64(uint64_t(pair)));
  const float u1 = (float((h >> 40) & 0xffffffu) + 1.0f) * (1.0f / 16777216.0f);  // (0, 1]
  const float u2 = float((h >> 8) & 0xffffffu) * (1.0f / 16777216.0f);            // [0, 1)
  const float r = std * std::sqrt(-2.0f * std::log(u1));
  const float angle = 6.28318530717958648f * u2;
  *a = r * std::cos(angle);
  *b = r * std::sin(angle);
}

void fill_normal(uint64_t seed, int64_t begin, int64_t count, float std, float* out) {
  const int64_t end = begin + count;
  const int64_t first_pair = begin >> 1, last_pair = (end + 1) >> 1;  // pairs overlapping [begin, end)
  parallel_for(last_pair - first_pair, 1 << 13, [&](int64_t pb, int64_t pe) {
    for (int64_t p = first_pair + pb; p < first_pair + pe; ++p) {
      float v[2];
      normal_pair(seed, p, std, &v[0], &v[1]);
      for (int64_t i = 2 * p; i < 2 * p + 2; ++i)
        if (i >= begin && i < end) out[i - begin] = v[i - 2 * p];
    }
  });
}

void fill_uniform(uint64_t seed, int64_t count, float range, float* out) {
  for (int64_t i = 0; i < count; ++i) {
    const double u = double(splitmix64(seed ^ splitmix64(uint64_t(i))) >> 11) / 9007199254740992.0;
    out[i] = float((2.0 * u - 1.0) * range);
  }
}

void store_as(const float* src, int64_t n, DType dtype, void* dst) {
  parallel_for(n, 1 << 15, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      switch (dtype) {
        case DType::F32: static_cast<float*>(dst)[i] = src[i]; break;
        case DType::BF16: static_cast<uint16_t*>(dst)[i] = f32_to_bf16(src[i]); break;
        case DType::F16: static_cast<uint16_t*>(dst)[i] = f32_to_f16(src[i]); break;
        default: DSV3_FAIL("[init] unsupported dtype ", dtype_name(dtype));
      }
    }
  });
}

// The name whose values a tensor carries: the MTP modules' embedding/head copies carry the main model's.
std::string value_source(const HfTensorSpec& spec, const ModelConfig& c) {
  if (spec.role == TensorRole::embedding) return "model.embed_tokens.weight";
  if (spec.role == TensorRole::head) return c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
  return spec.name;
}

struct Planned {
  const HfTensorSpec* spec;
  bool fp8;
  size_t bytes;  // including the FP8 scales
};

// Generates one tensor (and its FP8 scales) into `writer`.
void generate(const Planned& p, const ModelConfig& c, uint64_t seed, const RandomInitOptions& o,
              SafetensorsWriter& writer) {
  const HfTensorSpec& spec = *p.spec;
  const int64_t n = shape_numel(spec.shape);
  const uint64_t tseed = splitmix64(seed ^ fnv1a64(value_source(spec, c)));
  if (spec.role == TensorRole::norm) {
    std::vector<float> ones(size_t(n), 1.0f);
    Tensor t(o.dtype, spec.shape);
    store_as(ones.data(), n, o.dtype, t.data());
    writer.add(spec.name, std::move(t));
    return;
  }
  if (spec.role == TensorRole::router_bias) {
    Tensor t(DType::F32, spec.shape);
    fill_uniform(tseed, n, float(o.correction_bias_range), t.as<float>());
    writer.add(spec.name, std::move(t));
    return;
  }
  const float std = float(o.init_std);
  if (!p.fp8) {
    // Generate in stripes so a large table never needs an f32 copy of itself.
    Tensor t(o.dtype, spec.shape);
    const int64_t stripe = int64_t(1) << 22;
    std::vector<float> buf(size_t(std::min(n, stripe)));
    for (int64_t b = 0; b < n; b += stripe) {
      const int64_t m = std::min(stripe, n - b);
      fill_normal(tseed, b, m, std, buf.data());
      store_as(buf.data(), m, o.dtype, static_cast<char*>(t.data()) + size_t(b) * dtype_size(o.dtype));
    }
    writer.add(spec.name, std::move(t));
    return;
  }
  // FP8: quantize stripes of `block` rows; block scales never straddle stripes, so the result equals
  // quantizing the whole matrix.
  const int64_t block = c.quantization_config.block_rows;
  const int64_t rows = spec.shape[0], cols = spec.shape[1];
  const int64_t scale_rows = (rows + block - 1) / block, scale_cols = (cols + block - 1) / block;
  Tensor q(DType::F8_E4M3, spec.shape);
  Tensor scale(DType::F32, {scale_rows, scale_cols});
  std::vector<float> buf(size_t(std::min(rows, block) * cols));
  for (int64_t r = 0; r < rows; r += block) {
    const int64_t m = std::min(block, rows - r);
    fill_normal(tseed, r * cols, m * cols, std, buf.data());
    quantize_fp8_blocks(buf.data(), m, cols, block, c.quantization_config.ue8m0_scales,
                        q.as<uint8_t>() + r * cols, scale.as<float>() + (r / block) * scale_cols);
  }
  writer.add(spec.name, std::move(q));
  writer.add(scale_inv_name(spec.name), std::move(scale));
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  DSV3_CHECK(out.good(), "[init] cannot write ", path.string());
  out << text;
  out.close();
  DSV3_CHECK(out.good(), "[init] error writing ", path.string(), " (disk full?)");
}

}  // namespace

ModelConfig random_checkpoint_config(const ModelConfig& config, const RandomInitOptions& o) {
  ModelConfig c = config;
  if (o.fp8) {
    c.quantization_config = QuantizationConfig{};
    c.quantization_config.fp8 = true;
  }
  return c;
}

void write_random_checkpoint(const ModelConfig& config, const std::string& dir, uint64_t seed,
                             const RandomInitOptions& o) {
  DSV3_CHECK(o.dtype == DType::F32 || o.dtype == DType::BF16 || o.dtype == DType::F16,
             "[init] dtype must be F32, BF16 or F16, got ", dtype_name(o.dtype));
  DSV3_CHECK(o.init_std > 0, "[init] init_std must be positive, got ", o.init_std);
  DSV3_CHECK(o.max_shard_bytes > 0, "[init] max_shard_bytes must be positive");
  const ModelConfig c = random_checkpoint_config(config, o);
  const std::vector<HfTensorSpec> specs = hf_tensor_specs(c);

  std::error_code ec;
  fs::create_directories(dir, ec);
  DSV3_CHECK(!ec, "[init] cannot create directory ", dir, ": ", ec.message());
  const fs::path root(dir);

  // Plan shards greedily in spec order (a layer's tensors stay together).
  std::vector<std::vector<Planned>> shards(1);
  size_t shard_bytes = 0, total = 0;
  for (const HfTensorSpec& spec : specs) {
    Planned p{&spec, o.fp8 && spec.role == TensorRole::linear, 0};
    const int64_t n = shape_numel(spec.shape);
    if (p.fp8) {
      const int64_t b = c.quantization_config.block_rows;
      p.bytes = size_t(n) + size_t((spec.shape[0] + b - 1) / b * ((spec.shape[1] + b - 1) / b)) * sizeof(float);
    } else {
      p.bytes = size_t(n) * (spec.role == TensorRole::router_bias ? sizeof(float) : dtype_size(o.dtype));
    }
    if (!shards.back().empty() && shard_bytes + p.bytes > o.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(p);
    shard_bytes += p.bytes;
    total += p.bytes;
  }

  const size_t n_shards = shards.size();
  nlohmann::json weight_map = nlohmann::json::object();
  ProgressBar progress("init", int64_t(total), "B", o.show_progress);
  for (size_t i = 0; i < n_shards; ++i) {
    char file[64];
    if (n_shards == 1)
      std::snprintf(file, sizeof file, "model.safetensors");
    else
      std::snprintf(file, sizeof file, "model-%05zu-of-%05zu.safetensors", i + 1, n_shards);
    SafetensorsWriter writer;
    for (const Planned& p : shards[i]) {
      generate(p, c, seed, o, writer);
      progress.add(int64_t(p.bytes));
      weight_map[p.spec->name] = file;
      if (p.fp8) weight_map[scale_inv_name(p.spec->name)] = file;
    }
    writer.write_file((root / file).string());
  }  // each shard's tensors are freed before the next is generated

  const fs::path index_path = root / "model.safetensors.index.json";
  if (n_shards > 1) {
    const nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    write_text(index_path, index.dump(2) + "\n");
  } else {
    fs::remove(index_path, ec);  // a stale index would take precedence over model.safetensors
  }
  write_text(root / "config.json", model_config_to_json(c) + "\n");
  progress.finish();
}

}  // namespace dsv3
