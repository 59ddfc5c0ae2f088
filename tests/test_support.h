// Test helpers: error messages, temporary directories, tiny model configs, and tiny random checkpoints on disk.
// Header-only so any test file can include it.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "io/safetensors.h"
#include "infer/sampler.h"
#include "model/config.h"
#include "model/model.h"
#include "model/random_init.h"
#include "ops/linear.h"

namespace dsv3::testing {

// The npm prefix the tests read DeepSeek's tokenizer, @lenml/tokenizers and the Brown corpus from: always
// this checkout's deps/npm (scripts/npm-deps.sh installs them there), never a path from the environment.
inline std::string test_npm_dir() { return std::string(DSV3_SOURCE_DIR) + "/deps/npm"; }

// Fails the current test, naming what is missing, when an asset it compares against is absent. A missing
// asset is a failure and never a skip: a skipped reference check would let the suite pass unchecked.
#define DSV3_REQUIRE_ASSET(present, what) \
  if (!(present)) GTEST_FAIL() << "missing test asset: " << what << " (scripts/setup.sh installs it)"

// The message of the dsv3::Error fn throws, or "(no error)".
inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// A fresh directory under the system temp dir, removed (with its contents) on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    static std::atomic<int> counter{0};
    path_ = (std::filesystem::temp_directory_path() /
             ("dsv3_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++)))
                .string();
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Pearson's chi-square of observed counts against probabilities p over `draws` observations, the cells
// expected fewer than 5 times merged into one; *cells receives the number of cells compared.
inline double merged_chi_square(const std::vector<double>& counts, const std::vector<double>& p, double draws,
                                size_t* cells) {
  std::vector<double> kept_p, kept_counts;
  double rare_p = 0, rare_counts = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] * draws >= 5) {
      kept_p.push_back(p[i]);
      kept_counts.push_back(counts[i]);
    } else {
      rare_p += p[i];
      rare_counts += counts[i];
    }
  }
  kept_p.push_back(rare_p);
  kept_counts.push_back(rare_counts);
  double x2 = 0;
  for (size_t i = 0; i < kept_p.size(); ++i) {
    if (kept_p[i] <= 0) continue;
    const double e = kept_p[i] * draws;
    x2 += (kept_counts[i] - e) * (kept_counts[i] - e) / e;
  }
  *cells = kept_p.size();
  return x2;
}

// The model's exact joint distribution of the next three tokens after `prompt` under `sampling`
// (temperature, top-k/p), indexed (t1·V + t2)·V + t3, from forward()'s logits with the default options.
// For statistical tests on tiny vocabularies (V^3 forward passes).
inline std::vector<double> joint_distribution_of_three(const Model& model, const std::vector<int32_t>& prompt,
                                                       const SamplingParams& sampling) {
  const int64_t V = model.config.vocab_size;
  auto next = [&](const std::vector<int32_t>& tokens) {
    KVCache cache(model.config, int64_t(tokens.size()));
    Tensor logits;
    forward(model, cache, tokens.data(), int64_t(tokens.size()), ForwardOptions{}, &logits);
    Sampler s(sampling);
    std::vector<double> p;
    s.distribution(logits.as<float>(), V, p);
    return p;
  };
  std::vector<double> joint(size_t(V * V * V));
  const std::vector<double> p1 = next(prompt);
  for (int32_t a = 0; a < V; ++a) {
    std::vector<int32_t> pa = prompt;
    pa.push_back(a);
    const std::vector<double> p2 = next(pa);
    for (int32_t b = 0; b < V; ++b) {
      std::vector<int32_t> pab = pa;
      pab.push_back(b);
      const std::vector<double> p3 = next(pab);
      for (int32_t c = 0; c < V; ++c) joint[size_t((a * V + b) * V + c)] = p1[size_t(a)] * p2[size_t(b)] * p3[size_t(c)];
    }
  }
  return joint;
}

// With k - 1 degrees of freedom (k <= 130), a chi-square statistic above 2k + 40 has probability below
// 1e-6: the bound the statistical tests use.
inline double chi_square_bound(size_t cells) { return 2.0 * double(cells) + 40.0; }

// A tiny DeepSeek-V3-shaped config (sigmoid/noaux_tc routing with groups, q_lora, YaRN, one MTP module).
// hidden 144 and kv_b_proj rows 4·(16+16)=128 exercise full and partial 128×128 FP8 blocks.
inline ModelConfig tiny_v3_config() {
  ModelConfig c;
  c.model_type = "deepseek_v3";
  c.vocab_size = 300;
  c.hidden_size = 144;
  c.intermediate_size = 160;
  c.moe_intermediate_size = 48;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.q_lora_rank = 40;
  c.kv_lora_rank = 32;
  c.qk_nope_head_dim = 16;
  c.qk_rope_head_dim = 8;
  c.v_head_dim = 16;
  c.n_routed_experts = 8;
  c.n_shared_experts = 1;
  c.num_experts_per_tok = 3;
  c.first_k_dense_replace = 1;
  c.n_group = 4;
  c.topk_group = 2;
  c.scoring_func = ScoringFunc::sigmoid;
  c.topk_method = TopkMethod::noaux_tc;
  c.norm_topk_prob = true;
  c.routed_scaling_factor = 2.5;
  c.rope_theta = 10000.0;
  c.rope_scaling.yarn = true;
  c.rope_scaling.factor = 40.0;
  c.rope_scaling.beta_fast = 32.0;
  c.rope_scaling.beta_slow = 1.0;
  c.rope_scaling.mscale = 1.0;
  c.rope_scaling.mscale_all_dim = 1.0;
  c.rope_scaling.original_max_position_embeddings = 4096;
  c.max_position_embeddings = 163840;
  c.rms_norm_eps = 1e-6;
  c.num_nextn_predict_layers = 1;
  c.bos_token_id = 0;
  c.eos_token_id = 1;
  return c;
}

// A tiny DeepSeek-V2-Lite-shaped config: plain q_proj, softmax + greedy routing without normalisation,
// mscale 0.707, first layer dense, no MTP.
inline ModelConfig tiny_v2_config() {
  ModelConfig c = tiny_v3_config();
  c.model_type = "deepseek_v2";
  c.q_lora_rank.reset();
  c.n_group = 1;
  c.topk_group = 1;
  c.n_shared_experts = 2;
  c.scoring_func = ScoringFunc::softmax;
  c.topk_method = TopkMethod::greedy;
  c.norm_topk_prob = false;
  c.routed_scaling_factor = 1.0;
  c.rope_scaling.mscale = 0.707;
  c.rope_scaling.mscale_all_dim = 0.707;
  c.num_nextn_predict_layers = 0;
  c.bos_token_id = 100;
  c.eos_token_id = 101;
  return c;
}

// Writes a random checkpoint for `config` into `dir`. A larger init_std than `dsv3 init`'s default makes
// attention and routing decisive, so tests compare non-trivial computations.
inline void write_tiny_checkpoint(const ModelConfig& config, const std::string& dir, uint64_t seed, DType dtype,
                                  bool fp8, double init_std = 0.08, size_t max_shard_bytes = size_t(1) << 30) {
  RandomInitOptions o;
  o.init_std = init_std;
  o.dtype = dtype;
  o.fp8 = fp8;
  o.max_shard_bytes = max_shard_bytes;
  write_random_checkpoint(config, dir, seed, o);
}

// Copies the checkpoint in `src` to `dst` with every F8_E4M3 weight dequantized (value × block scale) to
// F32 — exactly the values the FP8 kernels compute with — and no quantization_config.
inline void write_dequantized_twin(const std::string& src, const std::string& dst) {
  ModelConfig config = load_model_config(src + "/config.json");
  const int64_t block = config.quantization_config.block_rows;
  const TensorStore store = TensorStore::open_dir(src);
  SafetensorsWriter writer;
  const std::string suffix = "_scale_inv";
  for (const std::string& name : store.names()) {
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) continue;
    const TensorView v = store.get(name);
    if (v.dtype != DType::F8_E4M3) {
      writer.add(name, v.dtype, v.shape, v.data);
      continue;
    }
    LinearWeight w{v.dtype, v.dim(0), v.dim(1), v.data, store.get(name + suffix).as<float>(), block};
    Tensor t(DType::F32, v.shape);
    for (int64_t r = 0; r < w.rows; ++r)
      for (int64_t c = 0; c < w.cols; ++c) t.as<float>()[r * w.cols + c] = w.at(r, c);
    writer.add(name, std::move(t));
  }
  std::filesystem::create_directories(dst);
  writer.write_file(dst + "/model.safetensors");
  config.quantization_config = QuantizationConfig{};
  std::ofstream(dst + "/config.json") << model_config_to_json(config);
}

// max |a - b| and max |b| over n values.
struct Diff {
  double max_abs_diff = 0;
  double max_abs_ref = 0;
};
inline Diff diff(const float* a, const float* b, int64_t n) {
  Diff d;
  for (int64_t i = 0; i < n; ++i) {
    d.max_abs_diff = std::max(d.max_abs_diff, std::fabs(double(a[i]) - double(b[i])));
    d.max_abs_ref = std::max(d.max_abs_ref, std::fabs(double(b[i])));
  }
  return d;
}

}  // namespace dsv3::testing
