#include "serve/openai_api.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <random>

#include <nlohmann/json.hpp>

#include "io/tokenizer.h"
#include "io/utf8.h"

namespace dsv3 {

using nlohmann::json;

namespace {

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

[[noreturn]] void bad(const std::string& param, const std::string& message) {
  throw ApiError(400, message, param);
}

const json* field(const json& body, const char* name) {
  const auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

int64_t integer_field(const json& body, const char* name, int64_t lo, int64_t hi) {
  const json& v = *field(body, name);
  if (!v.is_number_integer() && !(v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()))
    bad(name, std::string("'") + name + "' must be an integer");
  const double d = v.get<double>();
  if (!(d >= double(lo) && d <= double(hi)))
    bad(name, std::string("'") + name + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  return v.is_number_integer() ? v.get<int64_t>() : int64_t(d);
}

double number_field(const json& body, const char* name, double lo, double hi, bool open_lo = false) {
  const json& v = *field(body, name);
  if (!v.is_number()) bad(name, std::string("'") + name + "' must be a number");
  const double d = v.get<double>();
  if (!std::isfinite(d) || d > hi || (open_lo ? d <= lo : d < lo))
    bad(name, std::string("'") + name + "' must be in " + (open_lo ? "(" : "[") + std::to_string(lo) + ", " +
                  std::to_string(hi) + "]");
  return d;
}

bool bool_field(const json& body, const char* name) {
  const json& v = *field(body, name);
  if (!v.is_boolean()) bad(name, std::string("'") + name + "' must be true or false");
  return v.get<bool>();
}

// Message content: a string, or OpenAI's array of parts of which only text parts are supported.
std::string message_content(const json& content, size_t index) {
  const std::string where = "messages[" + std::to_string(index) + "].content";
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) bad(where, "'" + where + "' must be a string or an array of text parts");
  std::string text;
  for (const json& part : content) {
    if (!part.is_object() || part.value("type", json()) != "text" || !part.contains("text") || !part["text"].is_string())
      bad(where, "'" + where + "': only parts {\"type\": \"text\", \"text\": ...} are supported");
    text += part["text"].get<std::string>();
  }
  return text;
}

std::vector<ChatMessage> parse_messages(const json& body, const ApiLimits& limits) {
  const json* m = field(body, "messages");
  if (!m) bad("messages", "'messages' is required");
  if (!m->is_array() || m->empty()) bad("messages", "'messages' must be a non-empty array");
  if (m->size() > limits.max_messages)
    bad("messages", "'messages' has " + std::to_string(m->size()) + " entries; at most " +
                        std::to_string(limits.max_messages) + " are accepted");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < m->size(); ++i) {
    const json& msg = (*m)[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!msg.is_object()) bad(where, "'" + where + "' must be an object with 'role' and 'content'");
    const json* role = field(msg, "role");
    if (!role || !role->is_string()) bad(where + ".role", "'" + where + ".role' must be a string");
    std::string r = role->get<std::string>();
    if (r == "developer") r = "system";  // OpenAI's newer name for system instructions
    if (r != "system" && r != "user" && r != "assistant")
      bad(where + ".role", "'" + where + ".role' is '" + r + "'; supported roles are system, user and assistant");
    const json* content = field(msg, "content");
    if (!content) bad(where + ".content", "'" + where + ".content' is required");
    out.push_back({r, message_content(*content, i)});
  }
  return out;
}

std::vector<std::string> parse_stop(const json& body, const ApiLimits& limits) {
  const json& v = *field(body, "stop");
  std::vector<std::string> out;
  if (v.is_string()) {
    out.push_back(v.get<std::string>());
  } else if (v.is_array()) {
    for (const json& s : v) {
      if (!s.is_string()) bad("stop", "'stop' must be a string or an array of strings");
      out.push_back(s.get<std::string>());
    }
  } else {
    bad("stop", "'stop' must be a string or an array of strings");
  }
  if (out.size() > limits.max_stop_strings)
    bad("stop", "'stop' has " + std::to_string(out.size()) + " strings; at most " +
                    std::to_string(limits.max_stop_strings) + " are accepted");
  for (const std::string& s : out)
    if (s.size() > limits.max_stop_bytes)
      bad("stop", "a stop string is longer than " + std::to_string(limits.max_stop_bytes) + " bytes");
  return out;
}

const char* default_error_type(int status) {
  if (status == 401) return "authentication_error";
  if (status == 404) return "not_found_error";
  if (status == 429 || status == 503) return "server_busy_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

json usage_json(const ApiUsage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

json timings_json(const ApiUsage& u) {
  const int64_t prefilled = u.prompt_tokens - u.cached_tokens;
  return {{"prompt_n", prefilled},
          {"prompt_ms", u.prefill_seconds * 1e3},
          {"prompt_per_second", u.prefill_seconds > 0 ? prefilled / u.prefill_seconds : 0.0},
          {"predicted_n", u.completion_tokens},
          {"predicted_ms", u.decode_seconds * 1e3},
          {"predicted_per_second",
           u.decode_seconds > 0 && u.completion_tokens > 1 ? (u.completion_tokens - 1) / u.decode_seconds : 0.0}};
}

json chat_logprobs_json(const std::vector<ApiLogprob>& lps) {
  json content = json::array();
  for (const ApiLogprob& lp : lps) {
    json top = json::array();
    for (const ApiLogprob& t : lp.top) top.push_back({{"token", t.token}, {"logprob", t.logprob}, {"bytes", t.bytes}});
    content.push_back({{"token", lp.token}, {"logprob", lp.logprob}, {"bytes", lp.bytes}, {"top_logprobs", top}});
  }
  return {{"content", content}};
}

// The legacy completions layout: parallel arrays, top alternatives as {token: logprob} maps.
json completion_logprobs_json(const std::vector<ApiLogprob>& lps) {
  json tokens = json::array(), values = json::array(), tops = json::array(), offsets = json::array();
  size_t offset = 0;
  for (const ApiLogprob& lp : lps) {
    tokens.push_back(lp.token);
    values.push_back(lp.logprob);
    json top = json::object();
    for (const ApiLogprob& t : lp.top) top[t.token] = t.logprob;
    tops.push_back(top);
    offsets.push_back(offset);
    offset += lp.bytes.size();
  }
  return {{"tokens", tokens}, {"token_logprobs", values}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

json logprobs_json(ApiEndpoint endpoint, const std::vector<ApiLogprob>* lps) {
  if (!lps) return nullptr;
  return endpoint == ApiEndpoint::chat ? chat_logprobs_json(*lps) : completion_logprobs_json(*lps);
}

json chunk_base(ApiEndpoint endpoint, const ApiResponseId& id) {
  return {{"id", id.id},
          {"object", endpoint == ApiEndpoint::chat ? "chat.completion.chunk" : "text_completion"},
          {"created", id.created},
          {"model", id.model}};
}

std::string sse(const json& j) { return "data: " + dump(j) + "\n\n"; }

}  // namespace

std::string error_body(const ApiError& e) {
  return dump({{"error",
                {{"message", e.what()},
                 {"type", e.type.empty() ? default_error_type(e.status) : e.type},
                 {"param", e.param.empty() ? json(nullptr) : json(e.param)},
                 {"code", e.status}}}});
}

json parse_json_object(std::string_view text) {
  json body = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) throw ApiError(400, "the request body is not valid JSON (or not valid UTF-8)");
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object");
  return body;
}

ApiRequest parse_api_request(std::string_view text, ApiEndpoint endpoint, const ApiLimits& limits) {
  const json body = parse_json_object(text);
  ApiRequest r;
  r.endpoint = endpoint;
  r.sampling.temperature = 1.0f;  // OpenAI's default when the request gives none
  if (const json* m = field(body, "model")) {
    if (!m->is_string()) bad("model", "'model' must be a string");
    r.model = m->get<std::string>();
  }
  if (endpoint == ApiEndpoint::chat) {
    r.messages = parse_messages(body, limits);
  } else {
    const json* p = field(body, "prompt");
    if (!p) bad("prompt", "'prompt' is required");
    if (p->is_string()) {
      r.prompt = p->get<std::string>();
    } else if (p->is_array() && !p->empty() && (*p)[0].is_number_integer()) {
      for (const json& t : *p) {
        if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() > INT32_MAX)
          bad("prompt", "'prompt' given as tokens must be an array of non-negative integers");
        r.prompt_tokens.push_back(int32_t(t.get<int64_t>()));
      }
    } else if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) {
      r.prompt = (*p)[0].get<std::string>();
    } else {
      bad("prompt", "'prompt' must be a string, an array of one string, or an array of token ids");
    }
    if (r.prompt.empty() && r.prompt_tokens.empty()) bad("prompt", "'prompt' is empty");
  }
  const char* max_name = field(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  if (field(body, max_name)) r.max_tokens = integer_field(body, max_name, 1, INT32_MAX);
  if (field(body, "temperature")) r.sampling.temperature = float(number_field(body, "temperature", 0, 2));
  if (field(body, "top_p")) r.sampling.top_p = float(number_field(body, "top_p", 0, 1, /*open_lo=*/true));
  if (field(body, "top_k")) r.sampling.top_k = integer_field(body, "top_k", 0, INT32_MAX);
  if (field(body, "seed")) {
    r.sampling.seed = uint64_t(integer_field(body, "seed", INT64_MIN, INT64_MAX));
    r.seeded = true;
  }
  if (field(body, "n") && integer_field(body, "n", 1, INT32_MAX) != 1)
    bad("n", "'n' > 1 is not supported: send one request per completion");
  if (field(body, "stop")) r.stop = parse_stop(body, limits);
  if (field(body, "stream")) r.stream = bool_field(body, "stream");
  if (const json* so = field(body, "stream_options")) {
    if (!so->is_object()) bad("stream_options", "'stream_options' must be an object");
    if (field(*so, "include_usage")) r.include_usage = bool_field(*so, "include_usage");
  }
  if (endpoint == ApiEndpoint::chat) {
    const bool logprobs = field(body, "logprobs") && bool_field(body, "logprobs");
    if (field(body, "top_logprobs")) {
      const int64_t k = integer_field(body, "top_logprobs", 0, 20);
      if (!logprobs) bad("top_logprobs", "'top_logprobs' needs 'logprobs': true");
      r.top_logprobs = int(k);
    } else if (logprobs) {
      r.top_logprobs = 0;
    }
  } else if (field(body, "logprobs")) {
    r.top_logprobs = int(integer_field(body, "logprobs", 0, 5));
  }
  return r;
}

ApiLogprob api_logprob(const Tokenizer& tokenizer, const TokenLogprob& lp) {
  const auto make = [&](int32_t id, float value) {
    ApiLogprob a;
    const std::string_view raw = tokenizer.token_bytes(id);
    a.token = utf8_lossy(raw);
    a.bytes.assign(raw.begin(), raw.end());
    a.logprob = value;
    return a;
  };
  ApiLogprob out = make(lp.token, lp.logprob);
  for (const auto& [id, value] : lp.top) out.top.push_back(make(id, value));
  return out;
}

ApiResponseId new_response_id(ApiEndpoint endpoint, const std::string& model) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt = std::random_device{}();
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", (unsigned long long)(salt ^ (++counter * 0x9e3779b97f4a7c15ull)));
  ApiResponseId id;
  id.id = std::string(endpoint == ApiEndpoint::chat ? "chatcmpl-" : "cmpl-") + hex;
  id.created = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  id.model = model;
  return id;
}

std::string completion_body(ApiEndpoint endpoint, const ApiResponseId& id, const std::string& content,
                            const std::string& reasoning, const std::vector<ApiLogprob>* logprobs,
                            FinishReason finish, const ApiUsage& usage) {
  json choice = {{"index", 0}, {"logprobs", logprobs_json(endpoint, logprobs)}, {"finish_reason", finish_reason_name(finish)}};
  if (endpoint == ApiEndpoint::chat) {
    json message = {{"role", "assistant"}, {"content", content}};
    if (!reasoning.empty()) message["reasoning_content"] = reasoning;
    choice["message"] = message;
  } else {
    choice["text"] = content;
  }
  return dump({{"id", id.id},
               {"object", endpoint == ApiEndpoint::chat ? "chat.completion" : "text_completion"},
               {"created", id.created},
               {"model", id.model},
               {"choices", json::array({choice})},
               {"usage", usage_json(usage)},
               {"timings", timings_json(usage)}});
}

std::string role_chunk(const ApiResponseId& id, bool include_usage) {
  json j = chunk_base(ApiEndpoint::chat, id);
  j["choices"] = json::array(
      {{{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"logprobs", nullptr}, {"finish_reason", nullptr}}});
  if (include_usage) j["usage"] = nullptr;
  return sse(j);
}

std::string delta_chunk(ApiEndpoint endpoint, const ApiResponseId& id, const std::string& content,
                        const std::string& reasoning, const std::vector<ApiLogprob>* logprobs, bool include_usage) {
  json j = chunk_base(endpoint, id);
  json choice = {{"index", 0}, {"logprobs", logprobs_json(endpoint, logprobs)}, {"finish_reason", nullptr}};
  if (endpoint == ApiEndpoint::chat) {
    json delta = json::object();
    if (!content.empty() || reasoning.empty()) delta["content"] = content;
    if (!reasoning.empty()) delta["reasoning_content"] = reasoning;
    choice["delta"] = delta;
  } else {
    choice["text"] = content;
  }
  j["choices"] = json::array({choice});
  if (include_usage) j["usage"] = nullptr;
  return sse(j);
}

std::string final_chunk(ApiEndpoint endpoint, const ApiResponseId& id, FinishReason finish, bool include_usage) {
  json j = chunk_base(endpoint, id);
  json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_reason_name(finish)}};
  if (endpoint == ApiEndpoint::chat) {
    choice["delta"] = json::object();
  } else {
    choice["text"] = "";
  }
  j["choices"] = json::array({choice});
  if (include_usage) j["usage"] = nullptr;
  return sse(j);
}

std::string usage_chunk(ApiEndpoint endpoint, const ApiResponseId& id, const ApiUsage& usage) {
  json j = chunk_base(endpoint, id);
  j["choices"] = json::array();
  j["usage"] = usage_json(usage);
  j["timings"] = timings_json(usage);
  return sse(j);
}

}  // namespace dsv3
