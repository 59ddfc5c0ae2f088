// quantize_checkpoint_fp8 (`dsv3 quantize --fp8`): which tensors become FP8, bit-exactness with the
// scalar quantize_fp8_blocks, untouched copies, sharding, config.json, loading and logits, and refusals.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <vector>

#include "io/hf_names.h"
#include "model/model.h"
#include "model/quantize_checkpoint.h"
#include "ops/quantize.h"
#include "test_support.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// tiny_v3_config: hidden 144 (one full and one 16-wide block), q_lora 40, kv_lora 32, moe 48, dense 160,
// kv_b_proj 128 rows, eh_proj [144, 288], one MTP layer, MoE layers with router gate and correction bias.
ModelConfig test_config() { return testing::tiny_v3_config(); }

QuantizeCheckpointOptions quiet(bool ue8m0 = false) {
  QuantizeCheckpointOptions o;
  o.ue8m0_scales = ue8m0;
  o.show_progress = false;
  return o;
}

bool same_bytes(const TensorView& a, const TensorView& b) {
  return a.dtype == b.dtype && a.shape == b.shape && std::memcmp(a.data, b.data, a.nbytes()) == 0;
}

std::vector<float> widen(const TensorView& v) {
  std::vector<float> out(size_t(v.numel()));
  for (size_t i = 0; i < out.size(); ++i) out[i] = load_as_f32(v.data, v.dtype, i);
  return out;
}

// Checks `out` against `in` tensor by tensor: linear weights are FP8 codes + scales bit-identical to the
// scalar quantize_fp8_blocks on the input widened to f32; everything else is byte-identical; nothing else.
void expect_quantized_copy(const std::string& in, const std::string& out, bool ue8m0) {
  const ModelConfig config = load_model_config(in + "/config.json");
  const TensorStore a = TensorStore::open_dir(in), b = TensorStore::open_dir(out);
  size_t expected_names = 0, linear = 0, partial_blocks = 0;
  for (const HfTensorSpec& spec : hf_tensor_specs(config)) {
    const TensorView v = a.get(spec.name);
    ++expected_names;
    if (spec.role != TensorRole::linear) {
      EXPECT_TRUE(same_bytes(b.get(spec.name), v)) << spec.name << " must be copied unchanged";
      EXPECT_FALSE(b.has(spec.name + "_scale_inv")) << spec.name;
      continue;
    }
    ++linear;
    ++expected_names;
    const int64_t rows = spec.shape[0], cols = spec.shape[1];
    const Shape scale_shape{(rows + 127) / 128, (cols + 127) / 128};
    partial_blocks += (rows % 128 != 0 || cols % 128 != 0);
    const TensorView q = b.get(spec.name), s = b.get(scale_inv_name(spec.name));
    ASSERT_EQ(q.dtype, DType::F8_E4M3) << spec.name;
    ASSERT_EQ(q.shape, spec.shape) << spec.name;
    ASSERT_EQ(s.dtype, DType::F32) << spec.name;
    ASSERT_EQ(s.shape, scale_shape) << spec.name;
    const std::vector<float> w = widen(v);
    std::vector<uint8_t> ref_q(w.size());
    std::vector<float> ref_s(size_t(shape_numel(scale_shape)));
    quantize_fp8_blocks(w.data(), rows, cols, 128, ue8m0, ref_q.data(), ref_s.data());
    EXPECT_EQ(std::memcmp(q.data, ref_q.data(), ref_q.size()), 0) << spec.name << ": codes differ";
    EXPECT_EQ(std::memcmp(s.data, ref_s.data(), ref_s.size() * sizeof(float)), 0) << spec.name << ": scales differ";
    if (ue8m0)
      for (float x : ref_s) {
        int e;
        EXPECT_EQ(std::frexp(x, &e), 0.5f) << spec.name << ": ue8m0 scale " << x << " is not a power of two";
      }
  }
  EXPECT_EQ(b.names().size(), expected_names) << "the output holds exactly the input's tensors plus scales";
  EXPECT_GT(linear, 0u);
  EXPECT_GT(partial_blocks, 0u) << "the config must exercise partial edge blocks";
}

class QuantizeCheckpoint : public ::testing::Test {
 protected:
  testing::TempDir dir{"quantize_ckpt"};
};

TEST_F(QuantizeCheckpoint, LinearWeightsBecomeFp8BitExactOthersCopied) {
  const std::string in = dir.sub("bf16");
  testing::write_tiny_checkpoint(test_config(), in, 11, DType::BF16, false);
  for (bool ue8m0 : {false, true}) {
    SCOPED_TRACE(ue8m0 ? "ue8m0" : "float scales");
    const std::string out = dir.sub(ue8m0 ? "fp8_ue8m0" : "fp8");
    const QuantizeCheckpointStats stats = quantize_checkpoint_fp8(in, out, quiet(ue8m0));
    expect_quantized_copy(in, out, ue8m0);

    int64_t linear = 0, others = 0;
    for (const HfTensorSpec& spec : hf_tensor_specs(test_config())) (spec.role == TensorRole::linear ? linear : others)++;
    EXPECT_EQ(stats.quantized_tensors, linear);
    EXPECT_EQ(stats.copied_tensors, others);
    EXPECT_EQ(stats.undescribed_tensors, 0);
    EXPECT_EQ(stats.shards, 1);
    EXPECT_LT(stats.bytes_out, stats.bytes_in);
    EXPECT_TRUE(fs::exists(out + "/model.safetensors"));
    EXPECT_FALSE(fs::exists(out + "/model.safetensors.index.json"));

    // config.json: the input's keys and values unchanged, plus DeepSeek's quantization_config.
    nlohmann::json cin = nlohmann::json::parse(read_text(in + "/config.json"));
    nlohmann::json cout = nlohmann::json::parse(read_text(out + "/config.json"));
    nlohmann::json q = {{"activation_scheme", "dynamic"},
                        {"fmt", "e4m3"},
                        {"quant_method", "fp8"},
                        {"weight_block_size", {128, 128}}};
    if (ue8m0) q["scale_fmt"] = "ue8m0";
    EXPECT_EQ(cout["quantization_config"], q);
    cout.erase("quantization_config");
    EXPECT_EQ(cout, cin);
    const ModelConfig parsed = load_model_config(out + "/config.json");
    EXPECT_TRUE(parsed.quantization_config.fp8);
    EXPECT_EQ(parsed.quantization_config.ue8m0_scales, ue8m0);
  }
}

TEST_F(QuantizeCheckpoint, ShardsFollowTheInputOrRepack) {
  const std::string in = dir.sub("sharded");
  testing::write_tiny_checkpoint(test_config(), in, 12, DType::BF16, false, 0.08, 200'000);
  const TensorStore a = TensorStore::open_dir(in);
  std::map<std::string, int> input_files;
  for (const std::string& name : a.names()) input_files[fs::path(a.file_of(name)).filename().string()]++;
  ASSERT_GT(input_files.size(), 2u);

  const std::string out = dir.sub("follow");
  const QuantizeCheckpointStats stats = quantize_checkpoint_fp8(in, out, quiet());
  EXPECT_EQ(stats.shards, int64_t(input_files.size()));
  expect_quantized_copy(in, out, false);
  // Each tensor sits in the output shard of the same name as its input shard, scales beside their weights.
  const nlohmann::json index = nlohmann::json::parse(read_text(out + "/model.safetensors.index.json"));
  const TensorStore b = TensorStore::open_dir(out);
  EXPECT_EQ(index["weight_map"].size(), b.names().size());
  uint64_t total = 0;
  for (const std::string& name : b.names()) {
    total += b.get(name).nbytes();
    const std::string file = fs::path(b.file_of(name)).filename().string();
    EXPECT_EQ(index["weight_map"][name], file);
    const std::string weight = name.size() > 10 && name.ends_with("_scale_inv") ? name.substr(0, name.size() - 10)
                                                                                 : name;
    EXPECT_EQ(fs::path(a.file_of(weight)).filename().string(), file) << name;
  }
  EXPECT_EQ(index["metadata"]["total_size"], total);
  EXPECT_EQ(total, stats.bytes_out);

  // --shard-mb: greedy shards of at most the limit (no tensor here is larger).
  const std::string repacked = dir.sub("repacked");
  QuantizeCheckpointOptions o = quiet();
  o.max_shard_bytes = 120'000;
  const QuantizeCheckpointStats r = quantize_checkpoint_fp8(in, repacked, o);
  expect_quantized_copy(in, repacked, false);
  EXPECT_GT(r.shards, 1);
  for (const auto& entry : fs::directory_iterator(repacked)) {
    if (entry.path().extension() != ".safetensors") continue;
    const SafetensorsFile f(entry.path().string());
    uint64_t bytes = 0;
    for (const auto& [name, e] : f.entries()) bytes += e.end - e.begin;
    EXPECT_LE(bytes, o.max_shard_bytes) << entry.path();
  }
  // One big shard from a sharded input: model.safetensors and no index.
  const std::string single = dir.sub("single");
  o.max_shard_bytes = size_t(1) << 30;
  EXPECT_EQ(quantize_checkpoint_fp8(in, single, o).shards, 1);
  EXPECT_TRUE(fs::exists(single + "/model.safetensors"));
  EXPECT_FALSE(fs::exists(single + "/model.safetensors.index.json"));
  expect_quantized_copy(in, single, false);
}

// For an F32 checkpoint, quantizing gives exactly what `dsv3 init --fp8` writes for the same seed: both
// quantize the same f32 values with the same rule (random_init quantizes the f32 draws before any BF16
// rounding, so for a BF16 checkpoint the two differ by design and are not compared).
TEST_F(QuantizeCheckpoint, F32CheckpointMatchesRandomInitFp8) {
  const std::string f32 = dir.sub("f32"), init_fp8 = dir.sub("init_fp8"), out = dir.sub("quantized");
  testing::write_tiny_checkpoint(test_config(), f32, 13, DType::F32, false);
  testing::write_tiny_checkpoint(test_config(), init_fp8, 13, DType::F32, true);
  quantize_checkpoint_fp8(f32, out, quiet());
  const TensorStore a = TensorStore::open_dir(init_fp8), b = TensorStore::open_dir(out);
  ASSERT_EQ(a.names(), b.names());
  for (const std::string& name : a.names()) EXPECT_TRUE(same_bytes(a.get(name), b.get(name))) << name;
  EXPECT_EQ(model_config_to_json(load_model_config(init_fp8 + "/config.json")),
            model_config_to_json(load_model_config(out + "/config.json")));
}

// Logits of the main model and the MTP module in f32 activations.
struct Logits {
  Tensor main, mtp;
};
Logits run_model(const std::string& dir, const std::vector<int32_t>& tokens) {
  auto m = load_model(dir);
  ForwardOptions o;
  o.precision = Precision::f32;
  o.all_logits = true;
  const int64_t n = int64_t(tokens.size());
  KVCache cache(m->config, n);
  Logits out;
  Tensor hidden;
  forward(*m, cache, tokens.data(), n, o, &out.main, &hidden);
  mtp_forward(*m, 0, cache, hidden.as<float>(), tokens.data() + 1, n - 1, o, &out.mtp);
  return out;
}

// Relative RMS difference ||a - b|| / ||b||.
double relative_rms(const Tensor& a, const Tensor& b) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double d = double(a.as<float>()[i]) - double(b.as<float>()[i]);
    num += d * d;
    den += double(b.as<float>()[i]) * double(b.as<float>()[i]);
  }
  return std::sqrt(num / den);
}

std::vector<int32_t> test_tokens(int64_t vocab) {
  std::mt19937 rng(5);
  std::vector<int32_t> tokens(12);
  for (int32_t& t : tokens) t = int32_t(rng() % uint32_t(vocab));
  return tokens;
}

// Dense layers only, so the logits respond smoothly to weight noise (no routing decision flips).
ModelConfig dense_config() {
  ModelConfig c = test_config();
  c.n_routed_experts = 0;
  c.n_shared_experts = 0;
  c.num_experts_per_tok = 0;
  c.first_k_dense_replace = c.num_hidden_layers;
  c.n_group = 1;
  c.topk_group = 1;
  return c;
}

// The FP8 model against the BF16 one it came from, with the bound taken from the formats: E4M3 keeps 3
// explicit significand bits, BF16 7, so rounding a weight to E4M3 (relative to its block's scale, all
// values normal here) moves it 2^4 = 16× as far as rounding it to BF16 does. In a dense model the logits
// respond about linearly, so |FP8 − BF16| should be about 16× |BF16 − F32| for the same draws (measured
// 11–14×: embedding and head are rounded in the second case only). Allowed: 24×.
TEST_F(QuantizeCheckpoint, DenseModelErrorScalesWithTheFormatPrecision) {
  const std::string f32 = dir.sub("f32"), bf16 = dir.sub("bf16"), fp8 = dir.sub("fp8");
  const double init_std = 0.02;  // dsv3 init's default
  testing::write_tiny_checkpoint(dense_config(), f32, 14, DType::F32, false, init_std);
  testing::write_tiny_checkpoint(dense_config(), bf16, 14, DType::BF16, false, init_std);
  quantize_checkpoint_fp8(bf16, fp8, quiet());
  const std::vector<int32_t> tokens = test_tokens(dense_config().vocab_size);
  const Logits a = run_model(f32, tokens), b = run_model(bf16, tokens), q = run_model(fp8, tokens);
  const double bf16_main = relative_rms(b.main, a.main), bf16_mtp = relative_rms(b.mtp, a.mtp);
  const double fp8_main = relative_rms(q.main, b.main), fp8_mtp = relative_rms(q.mtp, b.mtp);
  std::printf("[          ] relative RMS logit change, main / MTP: BF16 vs F32 %.5f / %.5f, FP8 vs BF16 %.5f / %.5f "
              "(%.1fx / %.1fx)\n",
              bf16_main, bf16_mtp, fp8_main, fp8_mtp, fp8_main / bf16_main, fp8_mtp / bf16_mtp);
  EXPECT_GT(bf16_main, 0.0);
  EXPECT_LT(fp8_main, 24 * bf16_main);
  EXPECT_LT(fp8_mtp, 24 * bf16_mtp);
  EXPECT_LT(fp8_main, 0.1);
  EXPECT_LT(fp8_mtp, 0.1);
}

// The MoE model (FP8 experts, BF16 router): loads and runs. Weight noise of a few percent flips some
// routing decisions, so the change is not proportional to it (measured 0.05–0.08 relative RMS at init std
// 0.02); the bound is a quarter of the distance to an unrelated model (another seed, ~1.4), far below
// what a wrong scale layout or a scale used upside down produces.
TEST_F(QuantizeCheckpoint, MoeModelLoadsAndStaysCloseToBf16) {
  const std::string bf16 = dir.sub("bf16"), fp8 = dir.sub("fp8"), other = dir.sub("other");
  testing::write_tiny_checkpoint(test_config(), bf16, 15, DType::BF16, false, 0.02);
  testing::write_tiny_checkpoint(test_config(), other, 16, DType::BF16, false, 0.02);
  quantize_checkpoint_fp8(bf16, fp8, quiet());
  EXPECT_EQ(load_model(fp8)->weights.layers[1].moe.experts[0].up_proj.dtype, DType::F8_E4M3);
  const std::vector<int32_t> tokens = test_tokens(test_config().vocab_size);
  const Logits a = run_model(bf16, tokens), q = run_model(fp8, tokens), u = run_model(other, tokens);
  const double main = relative_rms(q.main, a.main), mtp = relative_rms(q.mtp, a.mtp);
  const double unrelated_main = relative_rms(u.main, a.main), unrelated_mtp = relative_rms(u.mtp, a.mtp);
  std::printf("[          ] relative RMS logit change, main / MTP: FP8 vs BF16 %.4f / %.4f, unrelated model %.3f / %.3f\n",
              main, mtp, unrelated_main, unrelated_mtp);
  EXPECT_GT(main, 0.0);
  EXPECT_LT(main, unrelated_main / 4);
  EXPECT_LT(mtp, unrelated_mtp / 4);
}

TEST_F(QuantizeCheckpoint, CopiesTokenizerFilesAndKeepsUndescribedTensors) {
  const std::string in = dir.sub("bf16"), out = dir.sub("fp8");
  testing::write_tiny_checkpoint(test_config(), in, 15, DType::BF16, false);
  // An extra tensor config.json does not describe (as older exports carry rotary inv_freq buffers).
  {
    const TensorStore a = TensorStore::open_dir(in);
    SafetensorsWriter w;
    for (const std::string& name : a.names()) {
      const TensorView v = a.get(name);
      w.add(name, v.dtype, v.shape, v.data);
    }
    Tensor extra(DType::F32, {4, 3});
    for (int i = 0; i < 12; ++i) extra.as<float>()[i] = float(i);
    w.add("model.layers.0.self_attn.rotary_emb.inv_freq", std::move(extra));
    w.write_file(in + "/model.safetensors.new");
  }
  fs::rename(in + "/model.safetensors.new", in + "/model.safetensors");
  std::ofstream(in + "/tokenizer.json") << "{\"model\": {}}";
  std::ofstream(in + "/tokenizer_config.json") << "{}";
  const QuantizeCheckpointStats stats = quantize_checkpoint_fp8(in, out, quiet());
  EXPECT_EQ(stats.undescribed_tensors, 1);
  EXPECT_EQ(stats.copied_files, 2);
  EXPECT_EQ(read_text(out + "/tokenizer.json"), read_text(in + "/tokenizer.json"));
  EXPECT_EQ(read_text(out + "/tokenizer_config.json"), "{}");
  const TensorStore a = TensorStore::open_dir(in), b = TensorStore::open_dir(out);
  EXPECT_TRUE(same_bytes(b.get("model.layers.0.self_attn.rotary_emb.inv_freq"),
                         a.get("model.layers.0.self_attn.rotary_emb.inv_freq")));
  load_model(out);  // the extra tensor does not disturb loading
}

// Expects quantize_checkpoint_fp8 to throw an Error whose message contains `what`.
void expect_refusal(const std::string& in, const std::string& out, const std::string& what,
                    const QuantizeCheckpointOptions& o = quiet()) {
  try {
    quantize_checkpoint_fp8(in, out, o);
    ADD_FAILURE() << "expected an error containing '" << what << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

bool empty_or_missing(const std::string& dir) { return !fs::exists(dir) || fs::is_empty(dir); }

TEST_F(QuantizeCheckpoint, RefusesFp8InputNonEmptyOutputAndBadInputs) {
  const std::string bf16 = dir.sub("bf16"), fp8 = dir.sub("fp8"), out = dir.sub("out");
  testing::write_tiny_checkpoint(test_config(), bf16, 16, DType::BF16, false);
  testing::write_tiny_checkpoint(test_config(), fp8, 16, DType::BF16, true);

  // Already FP8: by quantization_config, and by its tensors when config.json lacks one.
  expect_refusal(fp8, out, "already FP8");
  {
    ModelConfig c = load_model_config(fp8 + "/config.json");
    c.quantization_config = QuantizationConfig{};
    std::ofstream(fp8 + "/config.json") << model_config_to_json(c);
  }
  expect_refusal(fp8, out, "already FP8");
  EXPECT_TRUE(empty_or_missing(out));

  // Output not empty unless force; force replaces the old model (stale shards and index removed).
  const std::string busy = dir.sub("busy");
  testing::write_tiny_checkpoint(test_config(), busy, 17, DType::BF16, false, 0.08, 200'000);
  fs::create_directories(busy + "/keep");
  expect_refusal(bf16, busy, "not empty");
  QuantizeCheckpointOptions force = quiet();
  force.force = true;
  quantize_checkpoint_fp8(bf16, busy, force);
  expect_quantized_copy(bf16, busy, false);
  EXPECT_FALSE(fs::exists(busy + "/model.safetensors.index.json"));
  for (const auto& entry : fs::directory_iterator(busy))
    EXPECT_FALSE(entry.path().filename().string().starts_with("model-")) << "stale shard " << entry.path();
  EXPECT_TRUE(fs::exists(busy + "/keep"));

  // The input itself, even with force.
  expect_refusal(bf16, bf16, "input directory", force);

  // No config.json.
  const std::string no_config = dir.sub("no_config");
  fs::create_directories(no_config);
  fs::copy_file(bf16 + "/model.safetensors", no_config + "/model.safetensors");
  expect_refusal(no_config, out, "no config.json");

  // A weight to quantize in a dtype other than F32/BF16/F16, a missing tensor, a non-finite weight.
  const std::string q_a = "model.layers.0.self_attn.q_a_proj.weight";
  int variant = 0;
  auto rewrite = [&](const std::string& name, const std::function<void(SafetensorsWriter&, const TensorView&)>& f) {
    const std::string d = dir.sub("bad" + std::to_string(variant++));
    fs::create_directories(d);
    fs::copy_file(bf16 + "/config.json", d + "/config.json");
    const TensorStore a = TensorStore::open_dir(bf16);
    SafetensorsWriter w;
    for (const std::string& n : a.names()) {
      const TensorView v = a.get(n);
      if (n == name)
        f(w, v);
      else
        w.add(n, v.dtype, v.shape, v.data);
    }
    w.write_file(d + "/model.safetensors");
    return d;
  };
  expect_refusal(rewrite(q_a, [&](SafetensorsWriter& w, const TensorView& v) { w.add(q_a, Tensor(DType::I32, v.shape)); }),
                 out, "reads F32, BF16 or F16");
  expect_refusal(rewrite(q_a, [](SafetensorsWriter&, const TensorView&) {}), out, q_a);
  EXPECT_TRUE(empty_or_missing(out));
  const std::string nan_dir = rewrite(q_a, [&](SafetensorsWriter& w, const TensorView& v) {
    Tensor t(v.dtype, v.shape);
    std::memcpy(t.data(), v.data, v.nbytes());
    t.as<uint16_t>()[5 * v.dim(1) + 7] = f32_to_bf16(std::nanf(""));
    w.add(q_a, std::move(t));
  });
  expect_refusal(nan_dir, out, "non-finite value (nan) at [5, 7]");
  EXPECT_FALSE(fs::exists(out + "/config.json")) << "an interrupted output has no config.json";
}


}  // namespace
}  // namespace dsv3
