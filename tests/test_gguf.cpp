// GGUF v3 writer and reader (io/gguf.h) and the deepseek2 export (io/gguf_deepseek2.h). That llama.cpp
// runs the exported files and agrees with dsv3's logits is checked by tests/cli/export_gguf.sh.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "io/gguf.h"
#include "io/bpe.h"
#include "io/gguf_deepseek2.h"
#include "model/model.h"
#include "test_support.h"

namespace dsv3 {
namespace {

using testing::error_of;
using testing::TempDir;

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Writes every tensor of `writer` with byte k of tensor i equal to (i * 31 + k) % 251.
void write_pattern(const GgufWriter& writer, const std::string& path) {
  writer.write(path, [&](size_t i, const GgufByteSink& sink) {
    std::string bytes(size_t(writer.tensors()[i].nbytes()), '\0');
    for (size_t k = 0; k < bytes.size(); ++k) bytes[k] = char((i * 31 + k) % 251);
    sink(bytes.data(), bytes.size() / 2);  // in two pieces
    sink(bytes.data() + bytes.size() / 2, bytes.size() - bytes.size() / 2);
  });
}

template <typename T>
void append(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

// The byte layout of gguf.md, spelled out for one metadata entry and one tensor.
TEST(Gguf, ExactBytesOfASmallFile) {
  TempDir dir("gguf_bytes");
  GgufWriter w;
  w.add_u32("a", 7);
  w.add_tensor("t", {3}, GgmlType::F32);
  const float data[3] = {1.0f, 2.0f, 3.0f};
  w.write(dir.sub("f.gguf"), [&](size_t, const GgufByteSink& sink) { sink(data, sizeof(data)); });

  std::string expected = "GGUF";
  append<uint32_t>(expected, 3);  // version
  append<uint64_t>(expected, 1);  // tensors
  append<uint64_t>(expected, 1);  // metadata entries
  append<uint64_t>(expected, 1);
  expected += "a";
  append<uint32_t>(expected, 4);  // u32
  append<uint32_t>(expected, 7);
  append<uint64_t>(expected, 1);
  expected += "t";
  append<uint32_t>(expected, 1);  // n_dims
  append<uint64_t>(expected, 3);  // ne[0]
  append<uint32_t>(expected, 0);  // F32
  append<uint64_t>(expected, 0);  // offset
  ASSERT_EQ(expected.size(), 74u);
  expected.resize(96, '\0');  // the data section starts 32-aligned
  expected.append(reinterpret_cast<const char*>(data), sizeof(data));
  expected.resize(128, '\0');  // and is padded to a multiple of 32
  EXPECT_EQ(read_bytes(dir.sub("f.gguf")), expected);
}

TEST(Gguf, RoundTripsEveryTypeAndAlignment) {
  TempDir dir("gguf_roundtrip");
  GgufWriter w;
  w.set_alignment(64);
  w.add_u8("u8", 250);
  w.add_i8("i8", -100);
  w.add_u16("u16", 65000);
  w.add_i16("i16", -30000);
  w.add_u32("u32", 4000000000u);
  w.add_i32("i32", -2000000000);
  w.add_u64("u64", 1ull << 40);
  w.add_i64("i64", -(1ll << 40));
  w.add_f32("f32", 0.1f);
  w.add_f64("f64", 0.1);
  w.add_bool("yes", true);
  w.add_bool("no", false);
  w.add_string("s", "na\xc3\xafve \xe5\x8c\x97");
  w.add_string("empty", "");
  const std::vector<uint32_t> u = {1, 2, 4000000000u};
  const std::vector<int32_t> i = {-1, 0, 5};
  const std::vector<float> f = {0.5f, -2.0f};
  const std::vector<std::string> strings = {"a b", "", "Ġthe"};
  w.add_array("au32", std::span<const uint32_t>(u));
  w.add_array("ai32", std::span<const int32_t>(i));
  w.add_array("af32", std::span<const float>(f));
  w.add_array("astr", std::span<const std::string>(strings));
  w.add_tensor("odd", {3, 5}, GgmlType::BF16);  // 30 bytes: the next offset is padded
  w.add_tensor("blk.0.x", {31, 2, 3}, GgmlType::F32);
  w.add_tensor("h", {33}, GgmlType::F16);
  write_pattern(w, dir.sub("f.gguf"));

  const GgufFile g = read_gguf(dir.sub("f.gguf"));
  EXPECT_EQ(g.version, 3u);
  EXPECT_EQ(g.alignment, 64u);
  ASSERT_EQ(g.metadata.size(), 19u);
  EXPECT_EQ(g.metadata[0].first, "general.alignment");  // the order they were added in
  auto int_of = [&](const char* key, GgufType type) {
    const GgufValue* v = g.find(key);
    EXPECT_TRUE(v != nullptr && v->type == type && v->ints.size() == 1) << key;
    return v && !v->ints.empty() ? v->ints[0] : 0;
  };
  EXPECT_EQ(int_of("u8", GgufType::u8), 250);
  EXPECT_EQ(int_of("i8", GgufType::i8), -100);
  EXPECT_EQ(int_of("u16", GgufType::u16), 65000);
  EXPECT_EQ(int_of("i16", GgufType::i16), -30000);
  EXPECT_EQ(int_of("u32", GgufType::u32), 4000000000ll);
  EXPECT_EQ(int_of("i32", GgufType::i32), -2000000000);
  EXPECT_EQ(int_of("u64", GgufType::u64), 1ll << 40);
  EXPECT_EQ(int_of("i64", GgufType::i64), -(1ll << 40));
  EXPECT_EQ(int_of("yes", GgufType::boolean), 1);
  EXPECT_EQ(int_of("no", GgufType::boolean), 0);
  EXPECT_EQ(g.find("f32")->floats.at(0), double(0.1f));
  EXPECT_EQ(g.find("f64")->floats.at(0), 0.1);
  EXPECT_EQ(g.find("s")->strings.at(0), "na\xc3\xafve \xe5\x8c\x97");
  EXPECT_EQ(g.find("empty")->strings.at(0), "");
  const GgufValue* au = g.find("au32");
  ASSERT_TRUE(au && au->type == GgufType::array && au->element_type == GgufType::u32);
  EXPECT_EQ(au->ints, (std::vector<int64_t>{1, 2, 4000000000ll}));
  EXPECT_EQ(g.find("ai32")->ints, (std::vector<int64_t>{-1, 0, 5}));
  EXPECT_EQ(g.find("af32")->floats, (std::vector<double>{0.5, -2.0}));
  EXPECT_EQ(g.find("astr")->element_type, GgufType::string);
  EXPECT_EQ(g.find("astr")->strings, strings);
  EXPECT_EQ(g.find("missing"), nullptr);

  ASSERT_EQ(g.tensors.size(), 3u);
  EXPECT_EQ(g.data_offset % 64, 0u);
  const std::string bytes = read_bytes(dir.sub("f.gguf"));
  for (size_t t = 0; t < g.tensors.size(); ++t) {
    const GgufTensorInfo& info = g.tensors[t];
    EXPECT_EQ(info.offset % 64, 0u) << info.name;
    EXPECT_EQ(info.ne, w.tensors()[t].ne);
    EXPECT_EQ(info.type, w.tensors()[t].type);
    for (uint64_t k = 0; k < info.nbytes(); ++k)
      ASSERT_EQ(uint8_t(bytes[size_t(g.data_offset + info.offset + k)]), (t * 31 + k) % 251) << info.name << " " << k;
  }
  EXPECT_EQ(g.tensors[1].offset, 64u);
  EXPECT_EQ(g.find_tensor("h")->nbytes(), 66u);
  EXPECT_EQ(g.file_size, g.data_offset + w.data_bytes());
}

TEST(Gguf, WriterErrorsNameTheProblem) {
  TempDir dir("gguf_errors");
  GgufWriter w;
  w.add_u32("k", 1);
  EXPECT_NE(error_of([&] { w.add_string("k", "again"); }).find("'k' added twice"), std::string::npos);
  EXPECT_NE(error_of([&] { w.set_alignment(48); }).find("not a power of two"), std::string::npos);
  w.add_tensor("t", {4}, GgmlType::F32);
  EXPECT_NE(error_of([&] { w.add_tensor("t", {4}, GgmlType::F32); }).find("added twice"), std::string::npos);
  EXPECT_NE(error_of([&] { w.add_tensor("u", {4, 0}, GgmlType::F32); }).find("dimension of 0"), std::string::npos);
  EXPECT_NE(error_of([&] { w.add_tensor(std::string(64, 'x'), {4}, GgmlType::F32); }).find("1 to 63 bytes"),
            std::string::npos);
  const float four[4] = {};
  EXPECT_NE(error_of([&] {
              w.write(dir.sub("short.gguf"), [&](size_t, const GgufByteSink& sink) { sink(four, 12); });
            }).find("given 12 bytes, not its 16"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              w.write(dir.sub("long.gguf"), [&](size_t, const GgufByteSink& sink) {
                sink(four, 16);
                sink(four, 4);
              });
            }).find("more than its 16 bytes"),
            std::string::npos);
}

TEST(Gguf, ReaderRejectsDamagedFiles) {
  TempDir dir("gguf_damaged");
  GgufWriter w;
  w.add_string("general.architecture", "deepseek2");
  w.add_tensor("t", {8}, GgmlType::F32);
  write_pattern(w, dir.sub("good.gguf"));
  const std::string good = read_bytes(dir.sub("good.gguf"));
  auto error_for = [&](const std::string& bytes) {
    std::ofstream(dir.sub("bad.gguf"), std::ios::binary) << bytes;
    return error_of([&] { read_gguf(dir.sub("bad.gguf")); });
  };
  EXPECT_NE(error_for("GGUX" + good.substr(4)).find("not a GGUF file"), std::string::npos);
  std::string v2 = good;
  v2[4] = 2;
  EXPECT_NE(error_for(v2).find("version 2"), std::string::npos);
  EXPECT_NE(error_for(good.substr(0, 30)).find("truncated"), std::string::npos);
  EXPECT_NE(error_for(good.substr(0, good.size() - 32)).find("past the end of the file"), std::string::npos);
}

// ---- deepseek2 ----

TEST(GgufDeepseek2, WhatLlamaCppCannotExpressIsNamed) {
  EXPECT_TRUE(deepseek2_unsupported(testing::tiny_v3_config()).empty());
  EXPECT_TRUE(deepseek2_unsupported(testing::tiny_v2_config()).empty());
  auto reasons = [](auto change) {
    ModelConfig c = testing::tiny_v3_config();
    change(c);
    std::string all;
    for (const std::string& r : deepseek2_unsupported(c)) all += r + "\n";
    return all;
  };
  EXPECT_NE(reasons([](ModelConfig& c) { c.moe_layer_freq = 2; }).find("moe_layer_freq 2"), std::string::npos);
  EXPECT_NE(reasons([](ModelConfig& c) { c.n_shared_experts = 0; }).find("n_shared_experts is 0"), std::string::npos);
  EXPECT_NE(reasons([](ModelConfig& c) {
              c.scoring_func = ScoringFunc::softmax;
              c.topk_method = TopkMethod::group_limited_greedy;
            }).find("group_limited_greedy"),
            std::string::npos);
  // A group limit that keeps every group limits nothing.
  EXPECT_EQ(reasons([](ModelConfig& c) {
              c.scoring_func = ScoringFunc::softmax;
              c.topk_method = TopkMethod::group_limited_greedy;
              c.topk_group = c.n_group;
            }),
            "");
  EXPECT_NE(reasons([](ModelConfig& c) { c.num_hidden_layers = 27; }).find("q_lora_rank is 40"), std::string::npos);
  EXPECT_EQ(reasons([](ModelConfig& c) {
              c.num_hidden_layers = 27;
              c.q_lora_rank.reset();
            }),
            "");
  EXPECT_NE(reasons([](ModelConfig& c) { c.rope_scaling.mscale = 0.707; }).find("mscale 0.707 differs"),
            std::string::npos);
  EXPECT_EQ(reasons([](ModelConfig& c) { c.rope_scaling.factor = 1.0; c.rope_scaling.mscale = 0.5; }), "");
  EXPECT_NE(reasons([](ModelConfig& c) { c.n_routed_experts = 1200; }).find("at most 1024"), std::string::npos);
}

// A byte-level tokenizer.json for a 300-id model: bytes 0–255, "ab" (256), a gap at 257, "<s>" (258,
// special), "<｜User｜>" (259, not special but spelled like a control token), "<x>" (260, user-defined).
void write_tokenizer(const std::string& dir) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[bytes_to_byte_level(std::string(1, char(b)))] = b;
  vocab["ab"] = 256;
  nlohmann::json merges = nlohmann::json::array();
  merges.push_back(nlohmann::json::array({"a", "b"}));  // the [left, right] form
  const nlohmann::json added = {{{"id", 258}, {"content", "<s>"}, {"special", true}},
                                {{"id", 259}, {"content", "<\xef\xbd\x9cUser\xef\xbd\x9c>"}, {"special", false}},
                                {{"id", 260}, {"content", "<x>"}, {"special", false}}};
  const nlohmann::json tok = {
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
  std::ofstream(dir + "/tokenizer.json") << tok.dump();
  const nlohmann::json config = {{"bos_token", "<s>"}, {"add_bos_token", true}, {"chat_template", "{{ x }}"}};
  std::ofstream(dir + "/tokenizer_config.json") << config.dump();
}

struct Exported {
  std::unique_ptr<Model> model;
  GgufFile gguf;
  std::string bytes;
  // Element k of tensor `name` as f32 (F32 or BF16).
  float at(const std::string& name, int64_t k) const {
    const GgufTensorInfo* t = gguf.find_tensor(name);
    EXPECT_NE(t, nullptr) << name;
    const char* p = bytes.data() + gguf.data_offset + t->offset + uint64_t(k) * ggml_type_size(t->type);
    if (t->type == GgmlType::F32) {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    uint16_t h;
    std::memcpy(&h, p, 2);
    return bf16_to_f32(h);
  }
  int64_t metadata_int(const std::string& key) const {
    const GgufValue* v = gguf.find(key);
    EXPECT_TRUE(v != nullptr && v->ints.size() == 1) << key;
    return v && v->ints.size() == 1 ? v->ints[0] : -1;
  }
  double metadata_float(const std::string& key) const {
    const GgufValue* v = gguf.find(key);
    EXPECT_TRUE(v != nullptr && v->type == GgufType::f32) << key;
    return v && v->floats.size() == 1 ? v->floats[0] : -1;
  }
};

Exported export_tiny(const ModelConfig& config, const TempDir& dir, GgmlType type, bool fp8 = false) {
  testing::write_tiny_checkpoint(config, dir.sub("model"), 5, DType::BF16, fp8);
  write_tokenizer(dir.sub("model"));
  Exported e;
  e.model = load_model(dir.sub("model"));
  Deepseek2Export options;
  options.type = type;
  options.name = "tiny";
  options.tokenizer_json = dir.sub("model/tokenizer.json");
  options.progress = false;
  const Deepseek2ExportResult r = write_deepseek2_gguf(*e.model, dir.sub("m.gguf"), options);
  EXPECT_EQ(r.skipped_mtp, config.num_nextn_predict_layers);
  e.gguf = read_gguf(dir.sub("m.gguf"));
  e.bytes = read_bytes(dir.sub("m.gguf"));
  EXPECT_EQ(r.tensors, e.gguf.tensors.size());
  EXPECT_EQ(r.bytes, e.bytes.size());
  return e;
}

TEST(GgufDeepseek2, V3MetadataAsLlamaCppReadsIt) {
  TempDir dir("gguf_v3_meta");
  const ModelConfig c = testing::tiny_v3_config();
  const Exported e = export_tiny(c, dir, GgmlType::BF16);
  EXPECT_EQ(e.gguf.find("general.architecture")->strings.at(0), "deepseek2");
  EXPECT_EQ(e.gguf.find("general.name")->strings.at(0), "tiny");
  EXPECT_EQ(e.metadata_int("general.file_type"), 32);  // LLAMA_FTYPE_MOSTLY_BF16
  const std::pair<const char*, int64_t> ints[] = {
      {"block_count", 3}, {"context_length", 163840}, {"embedding_length", 144}, {"feed_forward_length", 160},
      {"vocab_size", 300}, {"leading_dense_block_count", 1}, {"attention.head_count", 4},
      {"attention.head_count_kv", 1}, {"attention.q_lora_rank", 40}, {"attention.kv_lora_rank", 32},
      {"attention.key_length", 32 + 8}, {"attention.value_length", 32}, {"attention.key_length_mla", 16 + 8},
      {"attention.value_length_mla", 16}, {"rope.dimension_count", 8}, {"rope.scaling.original_context_length", 4096},
      {"expert_feed_forward_length", 48}, {"expert_shared_count", 1}, {"expert_count", 8}, {"expert_used_count", 3},
      {"expert_group_count", 4}, {"expert_group_used_count", 2}, {"expert_gating_func", 2}, {"expert_weights_norm", 1},
  };
  for (const auto& [key, value] : ints) EXPECT_EQ(e.metadata_int(std::string("deepseek2.") + key), value) << key;
  EXPECT_EQ(e.gguf.find("deepseek2.expert_weights_norm")->type, GgufType::boolean);
  EXPECT_EQ(e.gguf.find("deepseek2.block_count")->type, GgufType::u32);
  EXPECT_EQ(e.gguf.find("deepseek2.rope.scaling.type")->strings.at(0), "yarn");
  EXPECT_FLOAT_EQ(e.metadata_float("deepseek2.rope.scaling.factor"), 40.0);
  EXPECT_FLOAT_EQ(e.metadata_float("deepseek2.rope.scaling.yarn_log_multiplier"), 0.1);
  EXPECT_FLOAT_EQ(e.metadata_float("deepseek2.expert_weights_scale"), 2.5);
  EXPECT_FLOAT_EQ(e.metadata_float("deepseek2.attention.layer_norm_rms_epsilon"), 1e-6);
  EXPECT_FLOAT_EQ(e.metadata_float("deepseek2.rope.freq_base"), 10000.0);

  // The vocabulary: one entry per id, gaps padded, added tokens typed as llama.cpp's converter types them.
  const GgufValue* tokens = e.gguf.find("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens && tokens->strings.size() == 300);
  EXPECT_EQ(tokens->strings[32], "\xc4\xa0");  // the byte-level spelling of ' '
  EXPECT_EQ(tokens->strings[256], "ab");
  EXPECT_EQ(tokens->strings[257], "[PAD257]");
  EXPECT_EQ(tokens->strings[299], "[PAD299]");
  const std::vector<int64_t>& types = e.gguf.find("tokenizer.ggml.token_type")->ints;
  EXPECT_EQ(e.gguf.find("tokenizer.ggml.token_type")->element_type, GgufType::i32);
  EXPECT_EQ((std::vector<int64_t>{types[0], types[256], types[257], types[258], types[259], types[260], types[299]}),
            (std::vector<int64_t>{1, 1, 5, 3, 3, 4, 5}));  // normal, unused, control, user-defined
  EXPECT_EQ(e.gguf.find("tokenizer.ggml.merges")->strings, (std::vector<std::string>{"a b"}));
  EXPECT_EQ(e.gguf.find("tokenizer.ggml.model")->strings.at(0), "gpt2");
  EXPECT_EQ(e.gguf.find("tokenizer.ggml.pre")->strings.at(0), "deepseek-v3");
  EXPECT_EQ(e.metadata_int("tokenizer.ggml.bos_token_id"), 258);
  EXPECT_EQ(e.metadata_int("tokenizer.ggml.eos_token_id"), 1);  // config.json's, the tokenizer names none
  EXPECT_EQ(e.metadata_int("tokenizer.ggml.add_bos_token"), 1);
  EXPECT_EQ(e.gguf.find("tokenizer.chat_template")->strings.at(0), "{{ x }}");
}

TEST(GgufDeepseek2, V3TensorsInLlamaCppsNamesShapesAndTypes) {
  TempDir dir("gguf_v3_tensors");
  const ModelConfig c = testing::tiny_v3_config();
  const Exported e = export_tiny(c, dir, GgmlType::BF16);
  auto expect = [&](const std::string& name, std::vector<int64_t> ne, GgmlType type) {
    const GgufTensorInfo* t = e.gguf.find_tensor(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->ne, ne) << name;
    EXPECT_EQ(t->type, type) << name;
  };
  const GgmlType bf16 = GgmlType::BF16, f32 = GgmlType::F32;
  expect("token_embd.weight", {144, 300}, bf16);
  expect("output_norm.weight", {144}, f32);
  expect("output.weight", {144, 300}, bf16);
  expect("blk.0.attn_norm.weight", {144}, f32);
  expect("blk.0.attn_q_a.weight", {144, 40}, bf16);
  expect("blk.0.attn_q_a_norm.weight", {40}, f32);
  expect("blk.0.attn_q_b.weight", {40, 4 * 24}, bf16);
  expect("blk.0.attn_kv_a_mqa.weight", {144, 32 + 8}, bf16);
  expect("blk.0.attn_kv_a_norm.weight", {32}, f32);
  expect("blk.0.attn_k_b.weight", {16, 32, 4}, bf16);
  expect("blk.0.attn_v_b.weight", {32, 16, 4}, bf16);
  expect("blk.0.attn_output.weight", {4 * 16, 144}, bf16);
  expect("blk.0.ffn_norm.weight", {144}, f32);
  expect("blk.0.ffn_gate.weight", {144, 160}, bf16);
  expect("blk.0.ffn_down.weight", {160, 144}, bf16);
  expect("blk.1.ffn_gate_inp.weight", {144, 8}, f32);
  expect("blk.1.exp_probs_b.bias", {8}, f32);
  expect("blk.2.ffn_gate_exps.weight", {144, 48, 8}, bf16);
  expect("blk.2.ffn_up_exps.weight", {144, 48, 8}, bf16);
  expect("blk.2.ffn_down_exps.weight", {48, 144, 8}, bf16);
  expect("blk.2.ffn_up_shexp.weight", {144, 48}, bf16);
  expect("blk.2.ffn_down_shexp.weight", {48, 144}, bf16);
  EXPECT_EQ(e.gguf.find_tensor("blk.0.ffn_gate_inp.weight"), nullptr);  // layer 0 is dense
  EXPECT_EQ(e.gguf.find_tensor("blk.3.attn_norm.weight"), nullptr);    // the MTP module is left out
  EXPECT_EQ(e.gguf.tensors.size(), 3 + (10 + 3) + 2 * (10 + 8u));  // global, dense layer 0, MoE layers 1-2

  // Values: a BF16 checkpoint exported to BF16 keeps every weight exactly; kv_b_proj is split per head,
  // K transposed; experts stacked outermost.
  const LayerWeights& l2 = e.model->weights.layers[2];
  const LinearWeight& kv_b = l2.attn.kv_b_proj;  // [4·(16+16), 32]
  for (int64_t h = 0; h < 4; ++h)
    for (int64_t col = 0; col < 32; ++col)
      for (int64_t d = 0; d < 16; ++d) {
        ASSERT_EQ(e.at("blk.2.attn_k_b.weight", (h * 32 + col) * 16 + d), kv_b.at(h * 32 + d, col));
        ASSERT_EQ(e.at("blk.2.attn_v_b.weight", (h * 16 + d) * 32 + col), kv_b.at(h * 32 + 16 + d, col));
      }
  for (int64_t x = 0; x < 8; ++x)
    for (int64_t r = 0; r < 144; r += 13)
      for (int64_t col = 0; col < 48; ++col)
        ASSERT_EQ(e.at("blk.2.ffn_down_exps.weight", (x * 144 + r) * 48 + col), l2.moe.experts[size_t(x)].down_proj.at(r, col));
  for (int64_t x = 0; x < 8; ++x) {
    EXPECT_EQ(e.at("blk.2.ffn_gate_inp.weight", x * 144 + 7), l2.moe.gate.at(x, 7));
    EXPECT_EQ(e.at("blk.2.exp_probs_b.bias", x), l2.moe.correction_bias.as<float>()[x]);
  }
  EXPECT_EQ(e.at("token_embd.weight", 299 * 144 + 143), bf16_to_f32(e.model->weights.embed_tokens.as<uint16_t>()[299 * 144 + 143]));
  EXPECT_EQ(e.at("output_norm.weight", 5), e.model->weights.norm.as<float>()[5]);
}

// FP8 weights come out dequantized with their block scales (exactly, in F32).
TEST(GgufDeepseek2, Fp8WeightsAreDequantized) {
  TempDir dir("gguf_fp8");
  const Exported e = export_tiny(testing::tiny_v3_config(), dir, GgmlType::F32, /*fp8=*/true);
  const LinearWeight& q_b = e.model->weights.layers[1].attn.q_b_proj;
  ASSERT_EQ(q_b.dtype, DType::F8_E4M3);
  for (int64_t r = 0; r < q_b.rows; r += 7)
    for (int64_t col = 0; col < q_b.cols; ++col)
      ASSERT_EQ(e.at("blk.1.attn_q_b.weight", r * q_b.cols + col), q_b.at(r, col));
  EXPECT_EQ(e.metadata_int("general.file_type"), 0);  // LLAMA_FTYPE_ALL_F32
}

// V2-Lite's layout: a plain attn_q (q_lora_rank 0), softmax routing, no group limit, no normalisation.
TEST(GgufDeepseek2, V2LiteLayout) {
  TempDir dir("gguf_v2");
  const Exported e = export_tiny(testing::tiny_v2_config(), dir, GgmlType::F32);
  EXPECT_NE(e.gguf.find_tensor("blk.0.attn_q.weight"), nullptr);
  EXPECT_EQ(e.gguf.find_tensor("blk.0.attn_q_a.weight"), nullptr);
  EXPECT_EQ(e.gguf.find_tensor("blk.1.exp_probs_b.bias"), nullptr);
  EXPECT_EQ(e.metadata_int("deepseek2.attention.q_lora_rank"), 0);
  EXPECT_EQ(e.metadata_int("deepseek2.expert_gating_func"), 1);
  EXPECT_EQ(e.metadata_int("deepseek2.expert_weights_norm"), 0);
  EXPECT_EQ(e.metadata_int("deepseek2.expert_shared_count"), 2);
  EXPECT_EQ(e.gguf.find("deepseek2.expert_group_count"), nullptr);
  EXPECT_FLOAT_EQ(e.metadata_float("deepseek2.rope.scaling.yarn_log_multiplier"), 0.0707);
}

TEST(GgufDeepseek2, UnsupportedConfigIsRefusedBeforeWriting) {
  TempDir dir("gguf_refused");
  ModelConfig c = testing::tiny_v2_config();
  c.n_group = 4;
  c.topk_group = 2;
  c.topk_method = TopkMethod::group_limited_greedy;
  testing::write_tiny_checkpoint(c, dir.sub("model"), 5, DType::BF16, false);
  write_tokenizer(dir.sub("model"));
  const std::unique_ptr<Model> model = load_model(dir.sub("model"));
  Deepseek2Export options;
  options.tokenizer_json = dir.sub("model/tokenizer.json");
  options.progress = false;
  const std::string error = error_of([&] { write_deepseek2_gguf(*model, dir.sub("m.gguf"), options); });
  EXPECT_NE(error.find("cannot express"), std::string::npos) << error;
  EXPECT_NE(error.find("group_limited_greedy"), std::string::npos) << error;
  EXPECT_FALSE(std::filesystem::exists(dir.sub("m.gguf")));
}

}  // namespace
}  // namespace dsv3
