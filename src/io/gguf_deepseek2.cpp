#include "io/gguf_deepseek2.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/dtype.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "ops/linear.h"

namespace dsv3 {

namespace {

// llama.cpp's limits (src/llama-hparams.h) and enum values (llama_expert_gating_func_type, llama_ftype,
// llama_token_type) that the file carries.
constexpr int64_t kLlamaMaxLayers = 512;
constexpr int64_t kLlamaMaxExperts = 1024;
constexpr uint32_t kGatingSoftmax = 1, kGatingSigmoid = 2;
constexpr uint32_t kFileTypeAllF32 = 0, kFileTypeMostlyBf16 = 32;
constexpr int32_t kTokenNormal = 1, kTokenControl = 3, kTokenUserDefined = 4, kTokenUnused = 5;

// dsv3 scores expert groups only for noaux_tc / group_limited_greedy with n_group > 1 (model/moe.cpp), and a
// group limit that keeps every group changes nothing.
bool groups_limit_experts(const ModelConfig& c) {
  return c.n_routed_experts > 0 && c.n_group > 1 && c.topk_method != TopkMethod::greedy && c.topk_group < c.n_group;
}

// Added tokens that llama.cpp's converter makes control tokens although not marked special
// (does_token_look_special): DeepSeek's "<｜...｜>" markers and "<|...|>".
bool looks_like_control(const std::string& t) {
  auto wrapped = [&t](std::string_view open, std::string_view close) {
    return t.size() >= open.size() + close.size() && t.starts_with(open) && t.ends_with(close);
  };
  return wrapped("<｜", "｜>") || wrapped("<|", "|>");
}

double yarn_mscale(double factor, double m) { return factor <= 1.0 ? 1.0 : 0.1 * m * std::log(factor) + 1.0; }

ExportTensor linear_tensor(std::string name, const LinearWeight& w, GgmlType type) {
  return ExportTensor{std::move(name), {w.cols, w.rows}, type,
                      [&w](int64_t begin, int64_t end, float* out) { dequantize_rows(w, begin, end, out); }};
}

ExportTensor vector_tensor(std::string name, const Tensor& t) {
  DSV3_CHECK(t.dtype() == DType::F32, "[gguf] ", name, " is not f32 in memory");
  return ExportTensor{std::move(name), {t.numel()}, GgmlType::F32, [&t](int64_t begin, int64_t end, float* out) {
                        std::copy(t.as<float>() + begin * t.numel(), t.as<float>() + end * t.numel(), out);
                      }};
}

// Experts stacked on the outermost axis: ne {in, out, n_experts}; row R is expert R / out, row R % out.
ExportTensor stacked_tensor(std::string name, std::vector<const LinearWeight*> experts, GgmlType type) {
  const int64_t rows = experts.at(0)->rows, cols = experts.at(0)->cols;
  for (const LinearWeight* w : experts)
    DSV3_CHECK(w->rows == rows && w->cols == cols, "[gguf] ", name, ": experts of different shapes");
  const int64_t n = int64_t(experts.size());
  return ExportTensor{std::move(name), {cols, rows, n}, type,
                      [experts = std::move(experts), rows, cols](int64_t begin, int64_t end, float* out) {
                        for (int64_t r = begin; r < end;) {
                          const int64_t e = r / rows, local = r % rows, run = std::min(end - r, rows - local);
                          dequantize_rows(*experts[size_t(e)], local, local + run, out + (r - begin) * cols);
                          r += run;
                        }
                      }};
}

// MLA's kv_b_proj [heads·(nope+v), kv_lora] split as llama.cpp's absorbed attention reads it (see the header).
ExportTensor k_b_tensor(std::string name, const LinearWeight& kv_b, const ModelConfig& c, GgmlType type) {
  const int64_t nope = c.qk_nope_head_dim, v = c.v_head_dim, rank = c.kv_lora_rank;
  return ExportTensor{std::move(name), {nope, rank, c.num_attention_heads}, type,
                      [&kv_b, nope, v, rank](int64_t begin, int64_t end, float* out) {
                        thread_local std::vector<float> head;  // one head's K rows [nope, rank]
                        head.resize(size_t(nope * rank));
                        int64_t loaded = -1;
                        for (int64_t r = begin; r < end; ++r) {
                          const int64_t h = r / rank, col = r % rank;
                          if (h != loaded) {
                            dequantize_rows(kv_b, h * (nope + v), h * (nope + v) + nope, head.data());
                            loaded = h;
                          }
                          for (int64_t d = 0; d < nope; ++d) out[(r - begin) * nope + d] = head[size_t(d * rank + col)];
                        }
                      }};
}

ExportTensor v_b_tensor(std::string name, const LinearWeight& kv_b, const ModelConfig& c, GgmlType type) {
  const int64_t nope = c.qk_nope_head_dim, v = c.v_head_dim, rank = c.kv_lora_rank;
  return ExportTensor{std::move(name), {rank, v, c.num_attention_heads}, type,
                      [&kv_b, nope, v, rank](int64_t begin, int64_t end, float* out) {
                        for (int64_t r = begin; r < end; ++r) {
                          const int64_t h = r / v, j = r % v, src = h * (nope + v) + nope + j;
                          dequantize_rows(kv_b, src, src + 1, out + (r - begin) * rank);
                        }
                      }};
}

std::vector<std::string> read_merges(const std::string& tokenizer_json_path) {
  std::ifstream in(tokenizer_json_path);
  DSV3_CHECK(in.good(), "[gguf] cannot open ", tokenizer_json_path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    DSV3_FAIL("[gguf] ", tokenizer_json_path, " is not valid JSON: ", e.what());
  }
  DSV3_CHECK(j.contains("model") && j["model"].is_object() && j["model"].value("type", "") == "BPE" &&
                 j["model"].contains("merges") && j["model"]["merges"].is_array(),
             "[gguf] ", tokenizer_json_path, " is not a BPE tokenizer with model.merges");
  std::vector<std::string> merges;
  merges.reserve(j["model"]["merges"].size());
  for (const nlohmann::json& m : j["model"]["merges"]) {
    if (m.is_string()) {
      merges.push_back(m.get<std::string>());
    } else {  // ["left", "right"]; the tokenizer's own load has checked the form
      DSV3_CHECK(m.is_array() && m.size() == 2, "[gguf] ", tokenizer_json_path, ": a merge is neither \"a b\" nor [a, b]");
      merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
    }
  }
  return merges;
}

void add_model_metadata(GgufWriter& w, const ModelConfig& c, const Deepseek2Export& options) {
  const std::string arch = "deepseek2";
  auto key = [&](const char* suffix) { return arch + "." + suffix; };
  auto u32 = [](int64_t v) { return uint32_t(v); };
  const bool moe = c.n_routed_experts > 0;
  const int64_t dense_lead = moe ? c.first_k_dense_replace : c.num_hidden_layers;

  w.add_string("general.architecture", arch);
  if (!options.name.empty()) w.add_string("general.name", options.name);
  w.add_u32("general.file_type", options.type == GgmlType::F32 ? kFileTypeAllF32 : kFileTypeMostlyBf16);
  w.add_u32("general.quantization_version", 2);

  w.add_u32(key("block_count"), u32(c.num_hidden_layers));
  w.add_u32(key("context_length"), u32(c.max_position_embeddings));
  w.add_u32(key("embedding_length"), u32(c.hidden_size));
  w.add_u32(key("feed_forward_length"), u32(c.intermediate_size));
  w.add_u32(key("vocab_size"), u32(c.vocab_size));
  w.add_u32(key("leading_dense_block_count"), u32(dense_lead));
  w.add_f32(key("attention.layer_norm_rms_epsilon"), float(c.rms_norm_eps));

  // MLA runs in llama.cpp as multi-query attention over the latent: one KV "head" of kv_lora + rope
  // for keys and kv_lora for values; the _mla lengths are the per-head sizes after decompression.
  w.add_u32(key("attention.head_count"), u32(c.num_attention_heads));
  w.add_u32(key("attention.head_count_kv"), 1);
  w.add_u32(key("attention.q_lora_rank"), u32(c.q_lora_rank.value_or(0)));  // 0: a plain attn_q
  w.add_u32(key("attention.kv_lora_rank"), u32(c.kv_lora_rank));
  w.add_u32(key("attention.key_length"), u32(c.kv_lora_rank + c.qk_rope_head_dim));
  w.add_u32(key("attention.value_length"), u32(c.kv_lora_rank));
  w.add_u32(key("attention.key_length_mla"), u32(c.qk_head_dim()));
  w.add_u32(key("attention.value_length_mla"), u32(c.v_head_dim));

  w.add_u32(key("rope.dimension_count"), u32(c.qk_rope_head_dim));
  w.add_f32(key("rope.freq_base"), float(c.rope_theta));
  const RopeScaling& s = c.rope_scaling;
  if (s.yarn && s.factor > 1.0) {  // YaRN with factor 1 is plain RoPE in dsv3 and in llama.cpp
    w.add_string(key("rope.scaling.type"), "yarn");
    w.add_f32(key("rope.scaling.factor"), float(s.factor));
    w.add_u32(key("rope.scaling.original_context_length"), u32(s.original_max_position_embeddings));
    w.add_f32(key("rope.scaling.yarn_beta_fast"), float(s.beta_fast));
    w.add_f32(key("rope.scaling.yarn_beta_slow"), float(s.beta_slow));
    // llama.cpp divides this by 0.1 again and uses it as mscale_all_dim in the softmax scale (its
    // convert_hf_to_gguf.py writes it this way for deepseek2 only).
    w.add_f32(key("rope.scaling.yarn_log_multiplier"), float(0.1 * s.mscale_all_dim));
  }

  w.add_u32(key("expert_feed_forward_length"), u32(moe ? c.moe_intermediate_size : c.intermediate_size));
  w.add_u32(key("expert_shared_count"), u32(moe ? c.n_shared_experts : 0));
  if (moe) {
    w.add_u32(key("expert_count"), u32(c.n_routed_experts));
    w.add_u32(key("expert_used_count"), u32(c.num_experts_per_tok));
    if (groups_limit_experts(c)) {
      w.add_u32(key("expert_group_count"), u32(c.n_group));
      w.add_u32(key("expert_group_used_count"), u32(c.topk_group));
    }
    w.add_u32(key("expert_gating_func"), c.scoring_func == ScoringFunc::sigmoid ? kGatingSigmoid : kGatingSoftmax);
    w.add_f32(key("expert_weights_scale"), float(c.routed_scaling_factor));
    // dsv3 leaves a single routed weight unnormalised (model/moe.cpp); llama.cpp would make it 1.
    w.add_bool(key("expert_weights_norm"), c.norm_topk_prob && c.num_experts_per_tok > 1);
  }
}

}  // namespace

std::vector<std::string> deepseek2_unsupported(const ModelConfig& c) {
  std::vector<std::string> why;
  const int64_t L = c.num_hidden_layers;
  if (L > kLlamaMaxLayers) why.push_back(cat("num_hidden_layers is ", L, "; llama.cpp allows at most ", kLlamaMaxLayers));
  if (c.n_routed_experts > kLlamaMaxExperts)
    why.push_back(cat("n_routed_experts is ", c.n_routed_experts, "; llama.cpp allows at most ", kLlamaMaxExperts));
  if (c.n_routed_experts > 0) {
    for (int64_t l = 0; l < L; ++l) {
      if (c.is_moe_layer(l) != (l >= c.first_k_dense_replace)) {
        why.push_back(cat("moe_layer_freq ", c.moe_layer_freq, " makes layer ", l, " ",
                          c.is_moe_layer(l) ? "MoE" : "dense", "; llama.cpp's deepseek2 makes every layer from "
                          "first_k_dense_replace on MoE"));
        break;
      }
    }
    if (c.first_k_dense_replace < L && c.n_shared_experts == 0)
      why.push_back("n_shared_experts is 0; llama.cpp's deepseek2 requires shared-expert weights in every MoE layer");
    if (groups_limit_experts(c) && c.topk_method == TopkMethod::group_limited_greedy)
      why.push_back(cat("topk_method group_limited_greedy with n_group ", c.n_group, " / topk_group ", c.topk_group,
                        " scores a group by its best expert; llama.cpp scores groups by the sum of their two best "
                        "(noaux_tc's rule)"));
  }
  // llama.cpp guesses "DeepSeek-V2-Lite" (no q_lora) from these layer counts and then ignores q_lora_rank.
  const bool guessed_lite = L == 26 || L == 27 || (L == 48 && c.vocab_size == 128256);
  if (guessed_lite && c.q_lora_rank.has_value())
    why.push_back(cat("num_hidden_layers ", L, (L == 48 ? " with vocab_size 128256" : ""),
                      " makes llama.cpp assume a model without q_lora_rank, but q_lora_rank is ", *c.q_lora_rank));
  const RopeScaling& s = c.rope_scaling;
  if (s.yarn && s.factor > 1.0 && std::abs(yarn_mscale(s.factor, s.mscale) / yarn_mscale(s.factor, s.mscale_all_dim) - 1.0) > 1e-6)
    why.push_back(cat("rope_scaling.mscale ", s.mscale, " differs from mscale_all_dim ", s.mscale_all_dim,
                      "; llama.cpp's YaRN for deepseek2 assumes they are equal (the cos/sin magnitude is then 1)"));
  return why;
}

std::vector<ExportTensor> deepseek2_tensors(const Model& model, GgmlType type) {
  DSV3_CHECK(type == GgmlType::F32 || type == GgmlType::BF16, "[gguf] export type must be F32 or BF16");
  const ModelConfig& c = model.config;
  const ModelWeights& w = model.weights;
  std::vector<ExportTensor> out;
  const TensorView& embed = w.embed_tokens;
  DSV3_CHECK(embed.shape.size() == 2, "[gguf] model.embed_tokens.weight is not 2-D");
  // The embedding as a [V, H] matrix that dequantize_rows reads (F32/BF16/F16).
  auto embedding = std::make_shared<LinearWeight>(
      LinearWeight{embed.dtype, embed.dim(0), embed.dim(1), embed.data, nullptr, 128});
  out.push_back(ExportTensor{"token_embd.weight", {embedding->cols, embedding->rows}, type,
                             [embedding](int64_t begin, int64_t end, float* o) { dequantize_rows(*embedding, begin, end, o); }});
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& layer = w.layers[size_t(l)];
    const AttentionWeights& a = layer.attn;
    auto blk = [l](const char* suffix) { return cat("blk.", l, ".", suffix); };
    out.push_back(vector_tensor(blk("attn_norm.weight"), layer.input_layernorm));
    if (a.q_lora) {
      out.push_back(linear_tensor(blk("attn_q_a.weight"), a.q_a_proj, type));
      out.push_back(vector_tensor(blk("attn_q_a_norm.weight"), a.q_a_layernorm));
      out.push_back(linear_tensor(blk("attn_q_b.weight"), a.q_b_proj, type));
    } else {
      out.push_back(linear_tensor(blk("attn_q.weight"), a.q_proj, type));
    }
    out.push_back(linear_tensor(blk("attn_kv_a_mqa.weight"), a.kv_a_proj_with_mqa, type));
    out.push_back(vector_tensor(blk("attn_kv_a_norm.weight"), a.kv_a_layernorm));
    out.push_back(k_b_tensor(blk("attn_k_b.weight"), a.kv_b_proj, c, type));
    out.push_back(v_b_tensor(blk("attn_v_b.weight"), a.kv_b_proj, c, type));
    out.push_back(linear_tensor(blk("attn_output.weight"), a.o_proj, type));
    out.push_back(vector_tensor(blk("ffn_norm.weight"), layer.post_attention_layernorm));
    if (!layer.is_moe) {
      out.push_back(linear_tensor(blk("ffn_gate.weight"), layer.mlp.gate_proj, type));
      out.push_back(linear_tensor(blk("ffn_up.weight"), layer.mlp.up_proj, type));
      out.push_back(linear_tensor(blk("ffn_down.weight"), layer.mlp.down_proj, type));
      continue;
    }
    const MoeWeights& m = layer.moe;
    out.push_back(linear_tensor(blk("ffn_gate_inp.weight"), m.gate, GgmlType::F32));  // the router stays f32
    if (!m.correction_bias.empty()) out.push_back(vector_tensor(blk("exp_probs_b.bias"), m.correction_bias));
    std::vector<const LinearWeight*> gate, up, down;
    for (const MlpWeights& e : m.experts) {
      gate.push_back(&e.gate_proj);
      up.push_back(&e.up_proj);
      down.push_back(&e.down_proj);
    }
    out.push_back(stacked_tensor(blk("ffn_gate_exps.weight"), std::move(gate), type));
    out.push_back(stacked_tensor(blk("ffn_up_exps.weight"), std::move(up), type));
    out.push_back(stacked_tensor(blk("ffn_down_exps.weight"), std::move(down), type));
    DSV3_CHECK(m.has_shared, "[gguf] layer ", l, " has no shared experts");
    out.push_back(linear_tensor(blk("ffn_gate_shexp.weight"), m.shared.gate_proj, type));
    out.push_back(linear_tensor(blk("ffn_up_shexp.weight"), m.shared.up_proj, type));
    out.push_back(linear_tensor(blk("ffn_down_shexp.weight"), m.shared.down_proj, type));
  }
  out.push_back(vector_tensor("output_norm.weight", w.norm));
  // Tied embeddings: llama.cpp falls back to token_embd when output.weight is absent.
  if (!c.tie_word_embeddings) out.push_back(linear_tensor("output.weight", w.lm_head, type));
  return out;
}

void add_deepseek2_tokenizer(GgufWriter& writer, const Tokenizer& tokenizer, const std::string& tokenizer_json_path,
                             const ModelConfig& config) {
  const int64_t V = config.vocab_size;
  DSV3_CHECK(tokenizer.vocab_size() <= V, "[gguf] ", tokenizer_json_path, " has ", tokenizer.vocab_size(),
             " ids, more than the model's vocab_size ", V);
  std::vector<bool> added(static_cast<size_t>(V), false);
  for (const AddedToken& t : tokenizer.added_tokens()) added[size_t(t.id)] = true;
  const std::vector<uint8_t>& decodable = *tokenizer.decodable_ids();
  std::vector<std::string> tokens(static_cast<size_t>(V));
  std::vector<int32_t> types(static_cast<size_t>(V));
  for (int64_t id = 0; id < V; ++id) {
    const auto i = size_t(id);
    if (id >= int64_t(decodable.size()) || !decodable[i]) {
      tokens[i] = cat("[PAD", id, "]");
      types[i] = kTokenUnused;
      continue;
    }
    tokens[i] = tokenizer.id_to_token(int32_t(id));
    const bool control = tokenizer.is_special(int32_t(id)) || looks_like_control(tokens[i]);
    types[i] = !added[i] ? kTokenNormal : control ? kTokenControl : kTokenUserDefined;
  }
  writer.add_string("tokenizer.ggml.model", "gpt2");
  writer.add_string("tokenizer.ggml.pre", "deepseek-v3");
  writer.add_array("tokenizer.ggml.tokens", std::span<const std::string>(tokens));
  writer.add_array("tokenizer.ggml.token_type", std::span<const int32_t>(types));
  const std::vector<std::string> merges = read_merges(tokenizer_json_path);
  writer.add_array("tokenizer.ggml.merges", std::span<const std::string>(merges));
  const std::optional<int32_t> bos = tokenizer.bos_id() ? tokenizer.bos_id() : config_token_id(config, "bos_token_id", "be written to the GGUF");
  const std::optional<int32_t> eos = tokenizer.eos_id() ? tokenizer.eos_id() : config_token_id(config, "eos_token_id", "be written to the GGUF");
  if (bos) writer.add_u32("tokenizer.ggml.bos_token_id", uint32_t(*bos));
  if (eos) writer.add_u32("tokenizer.ggml.eos_token_id", uint32_t(*eos));
  if (const std::optional<int32_t> pad = config_token_id(config, "pad_token_id", "be written to the GGUF"))
    writer.add_u32("tokenizer.ggml.padding_token_id", uint32_t(*pad));
  writer.add_bool("tokenizer.ggml.add_bos_token", tokenizer.add_bos_token());
  writer.add_bool("tokenizer.ggml.add_eos_token", false);
  if (!tokenizer.chat_template().empty()) writer.add_string("tokenizer.chat_template", tokenizer.chat_template());
}

Deepseek2ExportResult write_deepseek2_gguf(const Model& model, const std::string& path, const Deepseek2Export& options) {
  const ModelConfig& c = model.config;
  const std::vector<std::string> why = deepseek2_unsupported(c);
  if (!why.empty()) {
    std::string list;
    for (const std::string& w : why) list += "\n  - " + w;
    DSV3_FAIL("[export] llama.cpp's deepseek2 architecture cannot express this model (docs/GGUF.md says what "
              "can be exported):", list);
  }
  GgufWriter writer;
  add_model_metadata(writer, c, options);
  DSV3_CHECK(!options.tokenizer_json.empty(), "[export] no tokenizer.json given: llama.cpp needs the vocabulary");
  const Tokenizer tokenizer = Tokenizer::from_file(options.tokenizer_json);
  add_deepseek2_tokenizer(writer, tokenizer, options.tokenizer_json, c);
  const std::vector<ExportTensor> tensors = deepseek2_tensors(model, options.type);
  for (const ExportTensor& t : tensors) writer.add_tensor(t.name, t.ne, t.type);

  ProgressBar progress("export", int64_t(writer.data_bytes()), "B", options.progress);
  std::vector<float> rows;
  std::vector<uint16_t> halves;
  writer.write(path, [&](size_t i, const GgufByteSink& sink) {
    const ExportTensor& t = tensors[i];
    progress.set_note(t.name);
    int64_t numel = 1;
    for (int64_t d : t.ne) numel *= d;
    const int64_t width = t.ne[0], n_rows = numel / width;
    const int64_t chunk = std::max<int64_t>(1, (int64_t(1) << 22) / width);  // ~16 MiB of f32 per chunk
    for (int64_t r0 = 0; r0 < n_rows; r0 += chunk) {
      const int64_t n = std::min(chunk, n_rows - r0);
      rows.resize(size_t(n * width));
      parallel_for(n, 1, [&](int64_t b, int64_t e) { t.rows(r0 + b, r0 + e, rows.data() + b * width); });
      if (t.type == GgmlType::F32) {
        sink(rows.data(), rows.size() * sizeof(float));
      } else {
        halves.resize(rows.size());
        for (size_t k = 0; k < rows.size(); ++k) halves[k] = f32_to_bf16(rows[k]);
        sink(halves.data(), halves.size() * sizeof(uint16_t));
      }
      progress.add(int64_t(n * width * int64_t(ggml_type_size(t.type))));
    }
  });
  progress.set_note("");
  progress.finish();
  Deepseek2ExportResult result;
  result.tensors = tensors.size();
  result.bytes = std::filesystem::file_size(path);
  result.skipped_mtp = int64_t(model.weights.mtp.size());
  return result;
}

}  // namespace dsv3
