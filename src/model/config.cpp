// config.json of DeepSeek-V3 / V2 checkpoints (SPEC.md §1): parsing, validation, writing.
//
// Which fields are required: every field that changes a tensor's shape or which tensors exist
// (dimensions, q_lora_rank, n_routed_experts, and for MoE models moe_intermediate_size,
// num_experts_per_tok, n_shared_experts) must be present, null where Hugging Face allows null.
// Nothing is inferred from a dimension (STYLE.md §3). Fields that only tune behaviour take the
// default of Hugging Face's DeepseekV3Config / DeepseekV2Config for the model_type (V3: sigmoid,
// noaux_tc, norm_topk_prob true, n_group 8, topk_group 4, routed_scaling_factor 2.5, one MTP layer;
// V2: softmax, greedy, false, groups null -> 1, 1.0, no MTP). Unknown keys are accepted: real
// configs carry many (auto_map, initializer_range, aux_loss_alpha, seq_aux, ep_size, ...).
#include "model/config.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace dsv3 {
namespace {

using json = nlohmann::json;

std::string describe(const json& v) {
  std::string s = v.dump();
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

// Typed access to one JSON object (config.json itself, rope_scaling, quantization_config) with
// errors that name the source file and the dotted field path.
class Fields {
 public:
  Fields(const json& object, const std::string& source, std::string prefix)
      : obj_(object), source_(source), prefix_(std::move(prefix)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    DSV3_FAIL("[config] ", source_, ": field '", prefix_, key, "' ", what,
              "; fix config.json (compare with the checkpoint's published config.json)");
  }
  bool has(const std::string& key) const { return obj_.contains(key); }
  bool has_value(const std::string& key) const { return has(key) && !obj_.at(key).is_null(); }
  const json& at(const std::string& key) const { return obj_.at(key); }

  void require(const std::string& key, const char* hint = "") const {
    if (!has(key)) fail(key, cat("is missing", hint));
  }

  int64_t int_value(const std::string& key) const {
    const json& v = obj_.at(key);
    if (!v.is_number_integer()) fail(key, cat("must be an integer, got ", describe(v)));
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
      fail(key, cat("is too large: ", describe(v)));
    return v.get<int64_t>();
  }
  int64_t required_int(const std::string& key) const {
    require(key);
    if (obj_.at(key).is_null()) fail(key, "must be an integer, got null");
    return int_value(key);
  }
  int64_t optional_int(const std::string& key, int64_t fallback) const {
    return has_value(key) ? int_value(key) : fallback;
  }
  int64_t positive(const std::string& key, int64_t v) const {
    if (v <= 0) fail(key, cat("must be a positive integer, got ", v));
    return v;
  }
  int64_t non_negative(const std::string& key, int64_t v) const {
    if (v < 0) fail(key, cat("must be >= 0, got ", v));
    return v;
  }

  double number(const std::string& key, double fallback) const {
    if (!has_value(key)) return fallback;
    const json& v = obj_.at(key);
    if (!v.is_number()) fail(key, cat("must be a number, got ", describe(v)));
    const double d = v.get<double>();
    if (!std::isfinite(d)) fail(key, cat("must be finite, got ", describe(v)));
    return d;
  }
  bool boolean(const std::string& key, bool fallback) const {
    if (!has_value(key)) return fallback;
    const json& v = obj_.at(key);
    if (!v.is_boolean()) fail(key, cat("must be true or false, got ", describe(v)));
    return v.get<bool>();
  }
  std::string string(const std::string& key, const std::string& fallback) const {
    if (!has_value(key)) return fallback;
    const json& v = obj_.at(key);
    if (!v.is_string()) fail(key, cat("must be a string, got ", describe(v)));
    return v.get<std::string>();
  }
  // bos/eos/pad: an integer, null, or a non-empty list of integers (the first is stored). Any integer
  // is kept: whether it is in the vocabulary matters only where the id is used (config_token_id).
  std::optional<int64_t> token_id(const std::string& key) const {
    if (!has_value(key)) return std::nullopt;
    const json& v = obj_.at(key);
    const json& first = v.is_array() && !v.empty() ? v.front() : v;
    if (!first.is_number_integer() ||
        (first.is_number_unsigned() && first.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max())))
      fail(key, cat("must be a token id (an integer) or a list of them, got ", describe(v)));
    return first.get<int64_t>();
  }

 private:
  const json& obj_;
  const std::string& source_;
  std::string prefix_;
};

bool is_v3(const std::string& model_type) { return model_type == "deepseek_v3"; }

constexpr const char* kConfigTokenIdFields[] = {"bos_token_id", "eos_token_id", "pad_token_id"};

const std::optional<int64_t>& token_id_field(const ModelConfig& c, std::string_view field) {
  if (field == "bos_token_id") return c.bos_token_id;
  if (field == "eos_token_id") return c.eos_token_id;
  if (field == "pad_token_id") return c.pad_token_id;
  DSV3_FAIL("[config] ", field, " is not a token id field (bos_token_id, eos_token_id, pad_token_id)");
}

RopeScaling parse_rope_scaling(const json& j, const std::string& source, const std::string& field) {
  Fields f(j, source, field + ".");
  RopeScaling r;
  // Older configs spell the kind "type", newer Hugging Face versions "rope_type".
  const std::string kind = f.has_value("type") ? f.string("type", "") : f.string("rope_type", "");
  if (kind == "default" && field == "rope_parameters") return r;  // plain RoPE
  if (kind != "yarn")
    f.fail(f.has_value("type") ? "type" : "rope_type",
           cat("must be \"yarn\" (the only RoPE scaling DeepSeek models use), got \"", kind, "\""));
  r.yarn = true;
  f.require("factor");
  r.factor = f.number("factor", 1.0);
  if (!(r.factor >= 1.0)) f.fail("factor", cat("must be >= 1, got ", r.factor));
  r.beta_fast = f.number("beta_fast", 32.0);
  r.beta_slow = f.number("beta_slow", 1.0);
  if (!(r.beta_slow > 0) || !(r.beta_fast >= r.beta_slow))
    f.fail("beta_fast",
           cat("and beta_slow must satisfy beta_fast >= beta_slow > 0, got ", r.beta_fast, " and ", r.beta_slow));
  r.mscale = f.number("mscale", 1.0);
  r.mscale_all_dim = f.number("mscale_all_dim", 0.0);
  if (r.mscale < 0) f.fail("mscale", cat("must be >= 0, got ", r.mscale));
  if (r.mscale_all_dim < 0) f.fail("mscale_all_dim", cat("must be >= 0, got ", r.mscale_all_dim));
  r.original_max_position_embeddings =
      f.positive("original_max_position_embeddings", f.optional_int("original_max_position_embeddings", 4096));
  return r;
}

QuantizationConfig parse_quantization(const json& j, const std::string& source) {
  Fields f(j, source, "quantization_config.");
  QuantizationConfig q;
  const std::string method = f.string("quant_method", "");
  if (method != "fp8")
    f.fail("quant_method", cat("must be \"fp8\" (DeepSeek's block-scaled FP8), got \"", method,
                               "\"; other quantizations are not supported"));
  q.fp8 = true;
  const std::string fmt = f.string("fmt", "e4m3");
  if (fmt != "e4m3") f.fail("fmt", cat("must be \"e4m3\", got \"", fmt, "\""));
  if (f.has_value("weight_block_size")) {
    const json& b = f.at("weight_block_size");
    if (!b.is_array() || b.size() != 2 || !b[0].is_number_integer() || !b[1].is_number_integer() ||
        b[0].get<int64_t>() <= 0 || b[1].get<int64_t>() <= 0)
      f.fail("weight_block_size", cat("must be two positive integers like [128, 128], got ", describe(b)));
    q.block_rows = b[0].get<int64_t>();
    q.block_cols = b[1].get<int64_t>();
  }
  const std::string scheme = f.string("activation_scheme", "dynamic");
  if (scheme != "dynamic")
    f.fail("activation_scheme",
           cat("must be \"dynamic\" (activations scaled per 1x128 tile at run time), got \"", scheme, "\""));
  q.dynamic_activations = true;
  if (f.has_value("scale_fmt")) {
    const std::string scale_fmt = f.string("scale_fmt", "");
    if (scale_fmt != "ue8m0")
      f.fail("scale_fmt", cat("must be \"ue8m0\" (power-of-two scales) or absent, got \"", scale_fmt, "\""));
    q.ue8m0_scales = true;
  }
  return q;
}

}  // namespace

ModelConfig parse_model_config(const std::string& json_text, const std::string& source) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    DSV3_FAIL("[config] ", source, ": not valid JSON (", e.what(), "); re-download config.json");
  }
  if (!j.is_object()) DSV3_FAIL("[config] ", source, ": config.json must be a JSON object");
  Fields f(j, source, "");
  ModelConfig c;

  f.require("model_type");
  c.model_type = f.string("model_type", "");
  if (c.model_type != "deepseek_v3" && c.model_type != "deepseek_v2")
    f.fail("model_type", cat("must be \"deepseek_v3\" or \"deepseek_v2\", got \"", c.model_type,
                             "\"; dsv3 runs only DeepSeek-V3/V2 checkpoints"));
  const bool v3 = is_v3(c.model_type);

  // Dimensions (required).
  c.vocab_size = f.positive("vocab_size", f.required_int("vocab_size"));
  c.hidden_size = f.positive("hidden_size", f.required_int("hidden_size"));
  c.intermediate_size = f.positive("intermediate_size", f.required_int("intermediate_size"));
  c.num_hidden_layers = f.positive("num_hidden_layers", f.required_int("num_hidden_layers"));
  c.num_attention_heads = f.positive("num_attention_heads", f.required_int("num_attention_heads"));
  c.num_key_value_heads =
      f.positive("num_key_value_heads", f.optional_int("num_key_value_heads", c.num_attention_heads));
  f.require("q_lora_rank", " (use null for a plain q_proj, as DeepSeek-V2-Lite does)");
  if (f.has_value("q_lora_rank")) c.q_lora_rank = f.positive("q_lora_rank", f.int_value("q_lora_rank"));
  c.kv_lora_rank = f.positive("kv_lora_rank", f.required_int("kv_lora_rank"));
  c.qk_nope_head_dim = f.positive("qk_nope_head_dim", f.required_int("qk_nope_head_dim"));
  c.qk_rope_head_dim = f.positive("qk_rope_head_dim", f.required_int("qk_rope_head_dim"));
  if (c.qk_rope_head_dim % 2 != 0)
    f.fail("qk_rope_head_dim", cat("must be even (RoPE rotates pairs), got ", c.qk_rope_head_dim));
  c.v_head_dim = f.positive("v_head_dim", f.required_int("v_head_dim"));
  c.max_position_embeddings =
      f.positive("max_position_embeddings", f.optional_int("max_position_embeddings", v3 ? 4096 : 2048));

  // Mixture of experts. n_routed_experts null means a dense model (Hugging Face's convention).
  f.require("n_routed_experts", " (use null for a dense model)");
  c.n_routed_experts = f.non_negative("n_routed_experts", f.optional_int("n_routed_experts", 0));
  c.first_k_dense_replace = f.non_negative("first_k_dense_replace", f.optional_int("first_k_dense_replace", 0));
  if (c.first_k_dense_replace > c.num_hidden_layers)
    f.fail("first_k_dense_replace",
           cat("must be <= num_hidden_layers (", c.num_hidden_layers, "), got ", c.first_k_dense_replace));
  c.moe_layer_freq = f.positive("moe_layer_freq", f.optional_int("moe_layer_freq", 1));
  const std::string scoring = f.string("scoring_func", v3 ? "sigmoid" : "softmax");
  if (scoring == "sigmoid")
    c.scoring_func = ScoringFunc::sigmoid;
  else if (scoring == "softmax")
    c.scoring_func = ScoringFunc::softmax;
  else
    f.fail("scoring_func", cat("must be \"sigmoid\" or \"softmax\", got \"", scoring, "\""));
  const std::string topk = f.string("topk_method", v3 ? "noaux_tc" : "greedy");
  if (topk == "noaux_tc")
    c.topk_method = TopkMethod::noaux_tc;
  else if (topk == "greedy")
    c.topk_method = TopkMethod::greedy;
  else if (topk == "group_limited_greedy")
    c.topk_method = TopkMethod::group_limited_greedy;
  else
    f.fail("topk_method", cat("must be \"noaux_tc\", \"greedy\" or \"group_limited_greedy\", got \"", topk, "\""));
  // The released combinations: V3 scores with sigmoid and selects with the bias (noaux_tc);
  // V2 / V2.5 score with softmax and select greedily (optionally group-limited). Hugging Face's
  // modeling code implements exactly these pairs, so anything else is a broken config.
  if ((c.topk_method == TopkMethod::noaux_tc) != (c.scoring_func == ScoringFunc::sigmoid))
    f.fail("topk_method", cat("\"", topk, "\" cannot be combined with scoring_func \"", scoring,
                              "\": noaux_tc goes with sigmoid, greedy/group_limited_greedy with softmax"));
  c.norm_topk_prob = f.boolean("norm_topk_prob", v3);
  c.routed_scaling_factor = f.number("routed_scaling_factor", v3 ? 2.5 : 1.0);
  if (!(c.routed_scaling_factor > 0))
    f.fail("routed_scaling_factor", cat("must be > 0, got ", c.routed_scaling_factor));
  c.n_group = f.positive("n_group", f.optional_int("n_group", v3 && !f.has("n_group") ? 8 : 1));
  c.topk_group = f.positive("topk_group", f.optional_int("topk_group", v3 && !f.has("topk_group") ? 4 : 1));
  if (c.topk_group > c.n_group) f.fail("topk_group", cat("must be <= n_group (", c.n_group, "), got ", c.topk_group));
  if (c.n_routed_experts > 0) {
    f.require("moe_intermediate_size");
    c.moe_intermediate_size = f.positive("moe_intermediate_size", f.required_int("moe_intermediate_size"));
    c.num_experts_per_tok = f.positive("num_experts_per_tok", f.required_int("num_experts_per_tok"));
    if (c.num_experts_per_tok > c.n_routed_experts)
      f.fail("num_experts_per_tok",
             cat("must be <= n_routed_experts (", c.n_routed_experts, "), got ", c.num_experts_per_tok));
    f.require("n_shared_experts", " (use null or 0 for none)");
    c.n_shared_experts = f.non_negative("n_shared_experts", f.optional_int("n_shared_experts", 0));
    if (c.n_routed_experts % c.n_group != 0)
      f.fail("n_group", cat("must divide n_routed_experts (", c.n_routed_experts, "), got ", c.n_group));
    const int64_t per_group = c.n_routed_experts / c.n_group;
    if (c.topk_method != TopkMethod::greedy && c.num_experts_per_tok > c.topk_group * per_group)
      f.fail("num_experts_per_tok", cat("(", c.num_experts_per_tok, ") exceeds the experts in topk_group (",
                                        c.topk_group, ") groups of ", per_group));
    // noaux_tc scores a group by the sum of its two best biased scores (SPEC.md §1).
    if (c.topk_method == TopkMethod::noaux_tc && c.n_group > 1 && per_group < 2)
      f.fail("n_group", cat("leaves ", per_group, " expert per group; noaux_tc needs at least 2"));
  } else {
    // Dense model: recorded as "every layer is below first_k_dense_replace", which is also what
    // model_config_to_json writes (Hugging Face's native DeepseekV3 builds an MoE for every layer
    // >= first_k_dense_replace without checking n_routed_experts).
    c.first_k_dense_replace = c.num_hidden_layers;
    c.moe_intermediate_size = f.non_negative("moe_intermediate_size", f.optional_int("moe_intermediate_size", 0));
    c.num_experts_per_tok = f.non_negative("num_experts_per_tok", f.optional_int("num_experts_per_tok", 0));
    c.n_shared_experts = f.non_negative("n_shared_experts", f.optional_int("n_shared_experts", 0));
  }

  // Position encoding. Hugging Face >= 5 writes rope_parameters (with rope_theta inside).
  c.rope_theta = f.number("rope_theta", 10000.0);
  if (f.has_value("rope_scaling")) {
    if (!f.at("rope_scaling").is_object())
      f.fail("rope_scaling", cat("must be an object or null, got ", describe(f.at("rope_scaling"))));
    c.rope_scaling = parse_rope_scaling(f.at("rope_scaling"), source, "rope_scaling");
  } else if (f.has_value("rope_parameters")) {
    if (!f.at("rope_parameters").is_object())
      f.fail("rope_parameters", cat("must be an object, got ", describe(f.at("rope_parameters"))));
    c.rope_scaling = parse_rope_scaling(f.at("rope_parameters"), source, "rope_parameters");
    Fields p(f.at("rope_parameters"), source, "rope_parameters.");
    c.rope_theta = p.number("rope_theta", c.rope_theta);
  }
  if (!(c.rope_theta > 0)) f.fail("rope_theta", cat("must be > 0, got ", c.rope_theta));

  c.rms_norm_eps = f.number("rms_norm_eps", 1e-6);
  if (!(c.rms_norm_eps > 0)) f.fail("rms_norm_eps", cat("must be > 0, got ", c.rms_norm_eps));
  c.num_nextn_predict_layers =
      f.non_negative("num_nextn_predict_layers", f.optional_int("num_nextn_predict_layers", v3 ? 1 : 0));
  c.tie_word_embeddings = f.boolean("tie_word_embeddings", false);
  // Token ids change no computation: Hugging Face loads a config whose ids lie outside the
  // vocabulary (small test checkpoints often keep the original model's), and so does dsv3, with a
  // warning. config_token_id() checks an id where it is used.
  c.bos_token_id = f.token_id("bos_token_id");
  c.eos_token_id = f.token_id("eos_token_id");
  c.pad_token_id = f.token_id("pad_token_id");
  for (const char* field : kConfigTokenIdFields) {
    const std::optional<int64_t> id = token_id_field(c, field);
    if (id && (*id < 0 || *id >= c.vocab_size))
      std::fprintf(stderr,
                   "[config] warning: %s: %s %lld is outside the vocabulary (vocab_size %lld); loading anyway, it "
                   "is an error only where it is used\n",
                   source.c_str(), field, (long long)*id, (long long)c.vocab_size);
  }

  // Fields dsv3 does not model: accepted only at the value DeepSeek's models use.
  if (f.has_value("attention_bias") && f.boolean("attention_bias", false))
    f.fail("attention_bias", "must be false (DeepSeek attention projections have no bias)");
  if (f.has_value("mlp_bias") && f.boolean("mlp_bias", false))
    f.fail("mlp_bias", "must be false (DeepSeek MLP projections have no bias)");
  const std::string act = f.string("hidden_act", "silu");
  if (act != "silu") f.fail("hidden_act", cat("must be \"silu\" (SwiGLU experts), got \"", act, "\""));

  if (f.has_value("quantization_config")) {
    if (!f.at("quantization_config").is_object())
      f.fail("quantization_config", cat("must be an object, got ", describe(f.at("quantization_config"))));
    c.quantization_config = parse_quantization(f.at("quantization_config"), source);
  }
  return c;
}

ModelConfig load_model_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  DSV3_CHECK(in.good(), "[config] cannot open ", path, "; pass the checkpoint directory that contains config.json");
  std::ostringstream text;
  text << in.rdbuf();
  DSV3_CHECK(!in.bad(), "[config] error reading ", path);
  return parse_model_config(text.str(), path);
}

std::string model_config_to_json(const ModelConfig& c) {
  // Keys sorted (nlohmann::json objects are ordered maps), as Hugging Face writes them.
  const bool v3 = is_v3(c.model_type);
  json j;
  j["architectures"] = json::array({v3 ? "DeepseekV3ForCausalLM" : "DeepseekV2ForCausalLM"});
  j["model_type"] = c.model_type;
  j["attention_bias"] = false;
  j["attention_dropout"] = 0.0;
  j["hidden_act"] = "silu";
  j["torch_dtype"] = "bfloat16";
  j["use_cache"] = true;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["q_lora_rank"] = c.q_lora_rank ? json(*c.q_lora_rank) : json(nullptr);
  j["kv_lora_rank"] = c.kv_lora_rank;
  j["qk_nope_head_dim"] = c.qk_nope_head_dim;
  j["qk_rope_head_dim"] = c.qk_rope_head_dim;
  j["v_head_dim"] = c.v_head_dim;
  // Hugging Face's remote code builds the MoE when n_routed_experts is non-null, so a dense model
  // is written as null (and first_k_dense_replace = num_hidden_layers, see parse_model_config).
  // n_shared_experts stays an integer: 0 gives an empty shared MLP there, while null breaks the
  // native transformers implementation, which multiplies it unconditionally.
  const bool moe = c.n_routed_experts > 0;
  j["n_routed_experts"] = moe ? json(c.n_routed_experts) : json(nullptr);
  j["n_shared_experts"] = c.n_shared_experts;
  j["num_experts_per_tok"] = c.num_experts_per_tok > 0 ? json(c.num_experts_per_tok) : json(nullptr);
  j["moe_intermediate_size"] = c.moe_intermediate_size;
  j["first_k_dense_replace"] = c.first_k_dense_replace;
  j["moe_layer_freq"] = c.moe_layer_freq;
  j["n_group"] = c.n_group;
  j["topk_group"] = c.topk_group;
  j["scoring_func"] = c.scoring_func == ScoringFunc::sigmoid ? "sigmoid" : "softmax";
  j["topk_method"] = c.topk_method == TopkMethod::noaux_tc ? "noaux_tc"
                     : c.topk_method == TopkMethod::greedy ? "greedy"
                                                           : "group_limited_greedy";
  j["norm_topk_prob"] = c.norm_topk_prob;
  j["routed_scaling_factor"] = c.routed_scaling_factor;
  j["ep_size"] = 1;
  j["rope_theta"] = c.rope_theta;
  if (c.rope_scaling.yarn) {
    const RopeScaling& r = c.rope_scaling;
    j["rope_scaling"] = {{"type", "yarn"},
                         {"factor", r.factor},
                         {"beta_fast", r.beta_fast},
                         {"beta_slow", r.beta_slow},
                         {"mscale", r.mscale},
                         {"mscale_all_dim", r.mscale_all_dim},
                         {"original_max_position_embeddings", r.original_max_position_embeddings}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["num_nextn_predict_layers"] = c.num_nextn_predict_layers;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["bos_token_id"] = c.bos_token_id ? json(*c.bos_token_id) : json(nullptr);
  j["eos_token_id"] = c.eos_token_id ? json(*c.eos_token_id) : json(nullptr);
  if (c.pad_token_id) j["pad_token_id"] = *c.pad_token_id;
  if (c.quantization_config.fp8) {
    const QuantizationConfig& q = c.quantization_config;
    json qc = {{"quant_method", "fp8"},
               {"fmt", "e4m3"},
               {"activation_scheme", "dynamic"},
               {"weight_block_size", {q.block_rows, q.block_cols}}};
    if (q.ue8m0_scales) qc["scale_fmt"] = "ue8m0";
    j["quantization_config"] = qc;
  }
  return j.dump(2) + "\n";
}

std::optional<int32_t> config_token_id(const ModelConfig& config, std::string_view field, std::string_view use) {
  const std::optional<int64_t>& id = token_id_field(config, field);
  if (!id) return std::nullopt;
  DSV3_CHECK(*id >= 0 && *id < config.vocab_size, "[config] config.json ", field, " is ", *id,
             ", outside the vocabulary (vocab_size ", config.vocab_size, "), so it cannot ", use, ": set ", field,
             " in config.json to the tokenizer's id for that token, or to null");
  return int32_t(*id);
}

// Hugging Face's modeling_deepseek.py multiplies the softmax scale by mscale^2 whenever the config
// has rope_scaling with a non-zero mscale_all_dim; DeepSeek's inference/model.py does so only when
// the run's max_seq_len exceeds original_max_position_embeddings. We follow Hugging Face: the
// checkpoint's config alone decides, so the same checkpoint gives the same logits for any context
// length setting (the checkpoints were trained/evaluated with the scale applied).
double attention_softmax_scale(const ModelConfig& config) {
  double scale = 1.0 / std::sqrt(double(config.qk_head_dim()));
  const RopeScaling& r = config.rope_scaling;
  if (r.yarn && r.mscale_all_dim != 0.0 && r.factor > 1.0) {
    const double m = 0.1 * r.mscale_all_dim * std::log(r.factor) + 1.0;
    scale *= m * m;
  }
  return scale;
}

}  // namespace dsv3
