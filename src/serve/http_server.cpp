#include "serve/http_server.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "infer/special_tokens.h"
#include "serve/openai_api.h"
#include "serve/web_page.h"

namespace dsv3 {

using nlohmann::json;

namespace {

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(error_body(e), "application/json");
}

void send_json(httplib::Response& res, const json& j) {
  res.status = 200;
  res.set_content(j.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

}  // namespace

struct HttpServer::Impl {
  ServeOptions options;
  httplib::Server server;
  std::thread thread;
  ServeEngine engine;
  std::atomic<bool> ready{false}, draining{false};

  explicit Impl(const ServeOptions& o) : options(o) {}

  void routes();
  void completion(const httplib::Request& req, httplib::Response& res, ApiEndpoint endpoint);
  CompletionParams completion_params(const ApiRequest& r) const;
  // Chat replies split reasoning from content (--reasoning-format); text completions stay as generated.
  ReasoningSplitter splitter_for(ApiEndpoint endpoint) const {
    return ReasoningSplitter(engine.chat_template,
                             endpoint == ApiEndpoint::chat ? options.reasoning : ReasoningFormat::none);
  }
  std::string metrics_text() const;
};

CompletionParams HttpServer::Impl::completion_params(const ApiRequest& r) const {
  const Tokenizer& tok = *engine.tokenizer;
  CompletionParams p;
  if (r.endpoint == ApiEndpoint::chat) {
    p.prompt = encode_chat(tok, r.messages, /*add_generation_prompt=*/true, engine.chat_template);
  } else if (!r.prompt_tokens.empty()) {
    p.prompt = r.prompt_tokens;
  } else {
    // Text completions take the prompt as plain text after BOS, as `dsv3 generate` does: special-token
    // spellings in it stay text (give token ids to send control tokens).
    if (const std::optional<int32_t> bos = prompt_bos_id(engine.model->config, tok)) p.prompt.push_back(*bos);
    for (int32_t t : tok.encode(r.prompt, /*allow_special=*/false)) p.prompt.push_back(t);
  }
  p.max_tokens = r.max_tokens;
  p.sampling = r.sampling;
  p.sampling.allowed_ids = tok.decodable_ids();  // never an id the tokenizer cannot decode (padded vocabularies)
  if (!r.seeded) p.sampling.seed = std::random_device{}() | (uint64_t(std::random_device{}()) << 32);
  p.stop = r.stop;
  if (const std::optional<int32_t> eos = stop_eos_id(engine.model->config, tok)) p.stop_tokens.push_back(*eos);
  p.top_logprobs = r.top_logprobs;
  return p;
}

void HttpServer::Impl::completion(const httplib::Request& req, httplib::Response& res, ApiEndpoint endpoint) {
  if (!ready) throw ApiError(503, "the model is still loading; retry when /health answers 200");
  if (draining) throw ApiError(503, "the server is shutting down");
  const ApiRequest r = parse_api_request(req.body, endpoint);
  if (!r.model.empty() && r.model != options.model_id)
    throw ApiError(404, "model '" + r.model + "' does not exist; this server serves '" + options.model_id + "'",
                   "model", "invalid_request_error");
  std::shared_ptr<RequestHandle> handle;
  try {
    handle = engine.scheduler->submit(completion_params(r));
  } catch (const Error& e) {
    throw ApiError(400, e.what(), endpoint == ApiEndpoint::chat ? "messages" : "prompt");
  }
  if (!handle) {
    res.set_header("Retry-After", "1");
    throw ApiError(503, "the server is at capacity: " + std::to_string(engine.scheduler->options().max_queue) +
                            " requests are already waiting; retry later");
  }
  const ApiResponseId id = new_response_id(endpoint, options.model_id);
  const Tokenizer* tok = engine.tokenizer;
  const auto to_api = [tok](const std::vector<TokenLogprob>& lps) {
    std::vector<ApiLogprob> out;
    for (const TokenLogprob& lp : lps) out.push_back(api_logprob(*tok, lp));
    return out;
  };
  const auto usage_of = [](const RequestResult& rr) {
    ApiUsage u;
    u.prompt_tokens = rr.prompt_tokens;
    u.completion_tokens = rr.completion_tokens;
    u.cached_tokens = rr.cached_tokens;
    u.prefill_seconds = rr.prefill_seconds;
    u.decode_seconds = rr.decode_seconds;
    return u;
  };

  if (!r.stream) {
    ReasoningSplitter reply = splitter_for(endpoint);
    std::string content, reasoning;
    std::vector<ApiLogprob> logprobs;
    FinishReason finish = FinishReason::none;
    std::string error;
    while (finish == FinishReason::none) {
      RequestUpdate u = handle->next(std::chrono::milliseconds(200));
      const ReasoningDelta d = reply.push(u.text);
      content += d.content;
      reasoning += d.reasoning;
      for (ApiLogprob& lp : to_api(u.logprobs)) logprobs.push_back(std::move(lp));
      finish = u.finish;
      error = u.error;
    }
    const ReasoningDelta last = reply.finish();
    content += last.content;
    reasoning += last.reasoning;
    if (finish == FinishReason::error) throw ApiError(500, "generation failed: " + error);
    res.set_content(completion_body(endpoint, id, content, reasoning, r.top_logprobs >= 0 ? &logprobs : nullptr,
                                    finish, usage_of(handle->result())),
                    "application/json");
    return;
  }

  // Streaming: role chunk (chat), content deltas, the finish chunk, usage when asked, [DONE].
  struct StreamState {
    bool started = false, finished = false;
    ReasoningSplitter reply;
    explicit StreamState(ReasoningSplitter splitter) : reply(std::move(splitter)) {}
  };
  auto state = std::make_shared<StreamState>(splitter_for(endpoint));
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [=](size_t, httplib::DataSink& sink) {
        const auto write = [&sink](const std::string& s) { return sink.write(s.data(), s.size()); };
        if (!state->started) {
          state->started = true;
          if (endpoint == ApiEndpoint::chat && !write(role_chunk(id, r.include_usage))) return false;
        }
        if (!sink.is_writable()) {
          handle->cancel();
          return false;
        }
        RequestUpdate u = handle->next(std::chrono::milliseconds(500));
        ReasoningDelta d = state->reply.push(u.text);
        if (u.finish != FinishReason::none) {
          const ReasoningDelta last = state->reply.finish();
          d.content += last.content;
          d.reasoning += last.reasoning;
        }
        const std::string& content = d.content;
        const std::string& reasoning = d.reasoning;
        const std::vector<ApiLogprob> lps = to_api(u.logprobs);
        if (!content.empty() || !reasoning.empty() || !lps.empty()) {
          if (!write(delta_chunk(endpoint, id, content, reasoning, r.top_logprobs >= 0 ? &lps : nullptr,
                                 r.include_usage))) {
            handle->cancel();
            return false;
          }
        }
        if (u.finish == FinishReason::none) return true;
        if (u.finish == FinishReason::error) {
          write("data: " + error_body(ApiError(500, "generation failed: " + u.error)) + "\n\n");
        } else {
          write(final_chunk(endpoint, id, u.finish, r.include_usage));
          if (r.include_usage) write(usage_chunk(endpoint, id, usage_of(handle->result())));
        }
        write(std::string(kStreamDone));
        state->finished = true;
        sink.done();
        return true;
      },
      [handle, state](bool success) {
        if (!success || !state->finished) handle->cancel();  // the client went away: free its pages
      });
}

std::string HttpServer::Impl::metrics_text() const {
  const SchedulerMetrics m = engine.scheduler->metrics();
  std::string out;
  const auto metric = [&out](const char* name, const char* type, const char* help, double value) {
    char line[256];
    std::snprintf(line, sizeof line, "# HELP dsv3_%s %s\n# TYPE dsv3_%s %s\ndsv3_%s %.10g\n", name, help, name, type,
                  name, value);
    out += line;
  };
  metric("prompt_tokens_total", "counter", "Prompt tokens of admitted requests.", double(m.prompt_tokens));
  metric("generation_tokens_total", "counter", "Tokens generated.", double(m.generated_tokens));
  metric("prefix_cache_hit_tokens_total", "counter", "Prompt tokens supplied by the prefix cache.",
         double(m.cached_prompt_tokens));
  metric("prefix_cache_hit_pages_total", "counter", "Pages found in the prefix cache.", double(m.pages.prefix_hits));
  metric("prefill_tokens_per_second", "gauge", "Prefill throughput over the last 10 s.", m.prefill_tokens_per_second);
  metric("decode_tokens_per_second", "gauge", "Generated tokens per second over the last 10 s.",
         m.decode_tokens_per_second);
  metric("requests_running", "gauge", "Requests being prefilled or decoded.", double(m.running));
  metric("requests_queued", "gauge", "Requests waiting for a slot or pages.", double(m.queued));
  metric("requests_finished_total", "counter", "Requests finished (any reason).", double(m.requests_finished));
  metric("requests_rejected_total", "counter", "Requests refused because the queue was full.",
         double(m.requests_rejected));
  metric("preemptions_total", "counter", "Sequences preempted for lack of KV pages.", double(m.preemptions));
  metric("spec_draft_tokens_total", "counter", "MTP draft tokens verified (speculative decoding).",
         double(m.drafted_tokens));
  metric("spec_accepted_tokens_total", "counter", "MTP draft tokens accepted.", double(m.accepted_tokens));
  metric("kv_pages_total", "gauge", "Pages in the latent-KV pool.", double(m.pages.pages));
  metric("kv_pages_used", "gauge", "Pages mapped by running sequences.", double(m.pages.referenced));
  metric("kv_pages_cached", "gauge", "Idle pages kept for prefix reuse.", double(m.pages.cached_idle));
  metric("kv_pages_free", "gauge", "Pages never used or reclaimed.", double(m.pages.free));
  return out;
}

void HttpServer::Impl::routes() {
  const auto guarded = [this](auto fn) {
    return [this, fn](const httplib::Request& req, httplib::Response& res) {
      try {
        fn(req, res);
      } catch (const ApiError& e) {
        send_error(res, e);
      } catch (const std::exception& e) {
        send_error(res, ApiError(500, std::string("internal error: ") + e.what()));
      }
    };
  };
  const auto need_engine = [this] {
    if (!ready) throw ApiError(503, "the model is still loading; retry when /health answers 200");
  };

  server.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (ready) {
      send_json(res, {{"status", "ok"}});
    } else {
      send_error(res, ApiError(503, "the model is still loading"));
    }
  });
  server.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string(web_page_html()), "text/html; charset=utf-8");
  });
  server.Get("/v1/models", guarded([this](const httplib::Request&, httplib::Response& res) {
               json model = {{"id", options.model_id}, {"object", "model"}, {"created", 0}, {"owned_by", "dsv3"}};
               if (ready)
                 model["meta"] = {{"context", engine.scheduler->options().context},
                                  {"vocab_size", engine.model->config.vocab_size},
                                  {"parallel", engine.scheduler->options().parallel}};
               send_json(res, {{"object", "list"}, {"data", json::array({model})}});
             }));
  server.Get("/metrics", guarded([this, need_engine](const httplib::Request&, httplib::Response& res) {
               need_engine();
               res.set_content(metrics_text(), "text/plain; version=0.0.4");
             }));
  server.Post("/v1/chat/completions", guarded([this](const httplib::Request& req, httplib::Response& res) {
                completion(req, res, ApiEndpoint::chat);
              }));
  server.Post("/v1/completions", guarded([this](const httplib::Request& req, httplib::Response& res) {
                completion(req, res, ApiEndpoint::completion);
              }));
  server.Post("/tokenize", guarded([this, need_engine](const httplib::Request& req, httplib::Response& res) {
                need_engine();
                const json body = parse_json_object(req.body);
                const auto content = body.find("content");
                if (content == body.end() || !content->is_string())
                  throw ApiError(400, "'content' must be a string", "content");
                bool special = false;
                if (const auto it = body.find("add_special"); it != body.end()) {
                  if (!it->is_boolean()) throw ApiError(400, "'add_special' must be true or false", "add_special");
                  special = it->get<bool>();
                }
                const Tokenizer& tok = *engine.tokenizer;
                std::vector<int32_t> ids;
                if (special && tok.bos_id()) ids.push_back(*tok.bos_id());
                for (int32_t t : tok.encode(content->get<std::string>(), /*allow_special=*/special)) ids.push_back(t);
                send_json(res, {{"tokens", ids}});
              }));
  server.Post("/detokenize", guarded([this, need_engine](const httplib::Request& req, httplib::Response& res) {
                need_engine();
                const json body = parse_json_object(req.body);
                const auto tokens = body.find("tokens");
                if (tokens == body.end() || !tokens->is_array())
                  throw ApiError(400, "'tokens' must be an array of token ids", "tokens");
                const Tokenizer& tok = *engine.tokenizer;
                std::vector<int32_t> ids;
                for (const json& t : *tokens) {
                  if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= tok.vocab_size())
                    throw ApiError(400, "'tokens' holds " + t.dump() + ", not a token id in [0, " +
                                            std::to_string(tok.vocab_size()) + ")",
                                   "tokens");
                  ids.push_back(int32_t(t.get<int64_t>()));
                }
                send_json(res, {{"content", tok.decode(ids)}});
              }));

  // Authentication before routing: every route but the health check and the page needs the key.
  server.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (options.api_key.empty() || req.path == "/health" || req.path == "/") return httplib::Server::HandlerResponse::Unhandled;
    if (req.get_header_value("Authorization") == "Bearer " + options.api_key)
      return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, ApiError(401, "invalid or missing API key: send 'Authorization: Bearer KEY'"));
    return httplib::Server::HandlerResponse::Handled;
  });
  // Errors the library produces itself (unknown route, body too large, malformed request line) get
  // OpenAI's error body too.
  server.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string message = "HTTP status " + std::to_string(res.status);
    if (res.status == 404) message = "no route " + req.method + " " + req.path;
    if (res.status == 413) message = "the request body is larger than the server accepts";
    send_error(res, ApiError(res.status, message));
    return httplib::Server::HandlerResponse::Handled;
  }));
  server.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, ApiError(500, "internal error: " + what));
  });
}

HttpServer::HttpServer(const ServeOptions& options) : impl_(std::make_unique<Impl>(options)) {
  Impl& s = *impl_;
  s.server.set_payload_max_length(options.max_body_bytes);
  s.server.set_keep_alive_timeout(30);
  s.server.set_read_timeout(30);
  s.server.set_write_timeout(30);
  const int threads = options.http_threads > 0 ? options.http_threads : 128;
  s.server.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  s.routes();
}

HttpServer::~HttpServer() { stop(); }

int HttpServer::bind() {
  Impl& s = *impl_;
  int port = s.options.port;
  if (port == 0) {
    port = s.server.bind_to_any_port(s.options.host);
    DSV3_CHECK(port > 0, "[serve] cannot listen on ", s.options.host, " (any port)");
  } else {
    DSV3_CHECK(s.server.bind_to_port(s.options.host, port), "[serve] cannot listen on ", s.options.host, ":", port,
               " (in use, or not an address of this machine); choose another --port or --host");
  }
  return port;
}

void HttpServer::start() {
  impl_->thread = std::thread([this] { impl_->server.listen_after_bind(); });
}

void HttpServer::set_engine(const ServeEngine& engine) {
  impl_->engine = engine;
  impl_->ready = true;
}

void HttpServer::begin_drain() { impl_->draining = true; }

void HttpServer::stop() {
  if (!impl_) return;
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace dsv3
