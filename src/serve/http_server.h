// `dsv3 serve`'s HTTP front: OpenAI's API (chat and text completions, streamed as Server-Sent Events),
// model list, health, Prometheus metrics, tokenize/detokenize and the web chat page, on cpp-httplib.
//
// The server listens before the model is loaded, so /health answers 503 while loading and 200 once
// set_engine() has run; completions get 503 until then and after begin_drain(). Request threads parse,
// tokenize and render; all model work happens in the Scheduler's thread. Every error is an OpenAI error
// body with a 4xx/5xx status, including the ones the HTTP library produces itself (unknown routes,
// oversized bodies).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "infer/chat_format.h"
#include "infer/reasoning.h"
#include "io/tokenizer.h"
#include "model/model.h"
#include "serve/scheduler.h"

namespace dsv3 {

struct ServeOptions {
  std::string host = "127.0.0.1";
  int port = 8080;              // 0 = any free port
  std::string api_key;          // "" = no authentication
  std::string model_id;         // the name /v1/models lists and requests may give
  size_t max_body_bytes = size_t(4) << 20;
  int http_threads = 0;         // 0 = enough for every running and queued request, plus a few
  ReasoningFormat reasoning = ReasoningFormat::deepseek;  // deepseek: reasoning_content apart from content
};

// What a request thread needs of the loaded engine.
struct ServeEngine {
  const Model* model = nullptr;
  const Tokenizer* tokenizer = nullptr;
  Scheduler* scheduler = nullptr;
  ChatTemplate chat_template = ChatTemplate::deepseek_v3;  // renders chat requests, starts the splitter
};

class HttpServer {
 public:
  explicit HttpServer(const ServeOptions& options);
  ~HttpServer();

  // Binds the listening socket; returns the port (throws naming host and port when it cannot).
  int bind();
  // Serves in a thread of its own until stop().
  void start();
  void set_engine(const ServeEngine& engine);
  // New completions are refused with 503 from now on; running ones continue.
  void begin_drain();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsv3
