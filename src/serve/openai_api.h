// OpenAI's HTTP API shapes, as plain functions of text: request bodies of /v1/chat/completions and
// /v1/completions parsed and checked into an ApiRequest, and the response bodies, stream chunks and
// error bodies built from what the scheduler reports. No I/O here, so every function is unit-tested
// and the parser is fuzzed (fuzz/fuzz_openai_request.cpp).
//
// Parsing never trusts the body: anything malformed, of the wrong type or out of range is an ApiError
// with the HTTP status and a message naming the field, in OpenAI's error shape. Unknown fields are
// ignored, as OpenAI's servers do, so clients that send newer fields still work.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "infer/chat_format.h"
#include "infer/sampler.h"
#include "serve/scheduler.h"

namespace dsv3 {

// An error for the client: an HTTP status and OpenAI's error body.
struct ApiError : std::runtime_error {
  ApiError(int status, std::string message, std::string param = {}, std::string type = {})
      : std::runtime_error(message), status(status), param(std::move(param)), type(std::move(type)) {}
  int status;
  std::string param;  // the request field at fault, if one is
  std::string type;   // "" = derived from the status
};

// {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}
std::string error_body(const ApiError& e);

enum class ApiEndpoint { chat, completion };

struct ApiRequest {
  ApiEndpoint endpoint = ApiEndpoint::chat;
  std::string model;                  // "" when not given
  std::vector<ChatMessage> messages;  // chat
  std::string prompt;                 // completion (text)
  std::vector<int32_t> prompt_tokens; // completion given as token ids
  int64_t max_tokens = 0;             // 0 = not given (up to the context)
  SamplingParams sampling;
  bool seeded = false;                // `seed` was given
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;         // stream_options.include_usage
  int top_logprobs = -1;              // -1: no logprobs
};

struct ApiLimits {
  size_t max_stop_strings = 16;
  size_t max_stop_bytes = 1024;
  size_t max_messages = 4096;
};

// A request body that must be a JSON object (any endpoint); throws ApiError 400 otherwise.
nlohmann::json parse_json_object(std::string_view body);

// Throws ApiError (400 for malformed or invalid bodies).
ApiRequest parse_api_request(std::string_view body, ApiEndpoint endpoint, const ApiLimits& limits = {});

// ---- responses ----

struct ApiUsage {
  int64_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0;
};

// One token's log-probability as the client sees it: the token's text and bytes.
struct ApiLogprob {
  std::string token;           // its text (U+FFFD where it is part of a character)
  std::vector<uint8_t> bytes;  // its raw bytes
  float logprob = 0;
  std::vector<ApiLogprob> top;
};
ApiLogprob api_logprob(const Tokenizer& tokenizer, const TokenLogprob& lp);

// Identity of one response: the same in every chunk of a stream.
struct ApiResponseId {
  std::string id;  // "chatcmpl-…" / "cmpl-…"
  int64_t created = 0;
  std::string model;
};
ApiResponseId new_response_id(ApiEndpoint endpoint, const std::string& model);

// Non-streamed response body.
std::string completion_body(ApiEndpoint endpoint, const ApiResponseId& id, const std::string& content,
                            const std::string& reasoning, const std::vector<ApiLogprob>* logprobs,
                            FinishReason finish, const ApiUsage& usage);

// Stream chunks, each a complete SSE event ("data: {...}\n\n"). role_chunk: the first chat chunk
// (delta with the role); delta_chunk: content and/or reasoning; final_chunk: empty delta with the finish
// reason; usage_chunk: no choices, the usage (when stream_options.include_usage).
std::string role_chunk(const ApiResponseId& id, bool include_usage);
std::string delta_chunk(ApiEndpoint endpoint, const ApiResponseId& id, const std::string& content,
                        const std::string& reasoning, const std::vector<ApiLogprob>* logprobs, bool include_usage);
std::string final_chunk(ApiEndpoint endpoint, const ApiResponseId& id, FinishReason finish, bool include_usage);
std::string usage_chunk(ApiEndpoint endpoint, const ApiResponseId& id, const ApiUsage& usage);
inline constexpr std::string_view kStreamDone = "data: [DONE]\n\n";

}  // namespace dsv3
