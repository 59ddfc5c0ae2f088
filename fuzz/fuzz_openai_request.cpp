// libFuzzer target: the OpenAI request parser (parse_api_request) on arbitrary bytes, for both
// endpoints. Any outcome but a parsed request or an ApiError with a 4xx status is a finding; so is a
// crash, a leak or an allocation past -malloc_limit_mb. Built and run by fuzz/run.sh.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "serve/openai_api.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  for (dsv3::ApiEndpoint endpoint : {dsv3::ApiEndpoint::chat, dsv3::ApiEndpoint::completion}) {
    try {
      const dsv3::ApiRequest r = dsv3::parse_api_request(body, endpoint);
      // What the server relies on after a successful parse.
      if (r.endpoint == dsv3::ApiEndpoint::chat && r.messages.empty()) std::abort();
      if (r.endpoint == dsv3::ApiEndpoint::completion && r.prompt.empty() && r.prompt_tokens.empty()) std::abort();
      if (r.max_tokens < 0 || r.top_logprobs > 20 || r.top_logprobs < -1) std::abort();
      if (!(r.sampling.temperature >= 0 && r.sampling.temperature <= 2)) std::abort();
      if (!(r.sampling.top_p > 0 && r.sampling.top_p <= 1)) std::abort();
    } catch (const dsv3::ApiError& e) {
      if (e.status < 400 || e.status >= 500) std::abort();
      (void)dsv3::error_body(e);
    }
  }
  return 0;
}
