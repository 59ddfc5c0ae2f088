// `dsv3 serve`: the OpenAI-compatible server (src/serve).
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <thread>

#include "commands.h"
#include "core/error.h"
#include "serve/http_server.h"
#include "serve/scheduler.h"
#include "tool_common.h"

namespace dsv3::cli {

namespace {

struct ServeArgs {
  std::string model_dir;
  std::string host = "127.0.0.1";
  int port = 8080;
  int64_t parallel = 4;
  int64_t context = 4096;
  int64_t kv_pages = 0;
  std::string api_key;
  std::string reasoning_format = "deepseek";
  std::string chat_template;  // "" = detected from tokenizer_config.json
  int64_t max_queue = 64;
  int64_t step_tokens = 512;
  bool batch_invariant = false;
  bool no_mtp = false;
  int64_t mtp_draft_vocab = 32768;
  double mtp_min_acceptance = 0.5;
  std::string precision = "bf16";
  std::string model_id;
  size_t max_body_mb = 4;
};

int run_serve(const ServeArgs& a) {
  // SIGINT/SIGTERM are taken by sigwait below: block them in every thread this process starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  ServeOptions so;
  so.host = a.host;
  so.port = a.port;
  so.api_key = a.api_key;
  so.model_id = a.model_id.empty() ? std::filesystem::path(a.model_dir).lexically_normal().filename().string() : a.model_id;
  if (so.model_id.empty()) so.model_id = std::filesystem::absolute(a.model_dir).parent_path().filename().string();
  so.max_body_bytes = a.max_body_mb << 20;
  so.reasoning = parse_reasoning_format(a.reasoning_format);
  so.http_threads = int(a.parallel + a.max_queue + 16);
  HttpServer http(so);
  const int port = http.bind();
  http.start();
  std::fprintf(stderr, "[serve] listening on http://%s:%d (loading %s; /health answers 503 until ready)\n",
               a.host.c_str(), port, a.model_dir.c_str());

  const LoadedModel loaded = load_model_with_tokenizer(a.model_dir);
  SchedulerOptions sched;
  sched.parallel = a.parallel;
  sched.context = std::min<int64_t>(a.context, loaded.model->config.max_position_embeddings);
  sched.kv_pages = a.kv_pages;
  sched.max_queue = a.max_queue;
  sched.step_tokens = a.step_tokens;
  sched.batch_invariant = a.batch_invariant;
  // Speculative decoding is on whenever the checkpoint brings an MTP module (DeepSeek-V3's does).
  sched.mtp = !a.no_mtp && !loaded.model->weights.mtp.empty();
  sched.mtp_draft_vocab = a.mtp_draft_vocab;
  sched.mtp_min_acceptance = a.mtp_min_acceptance;
  sched.forward.precision = a.precision == "f32" ? Precision::f32 : a.precision == "fp8" ? Precision::fp8 : Precision::bf16;
  Scheduler scheduler(*loaded.model, *loaded.tokenizer, sched);
  scheduler.start();
  const ChatTemplate chat_template = a.chat_template.empty() ? detect_chat_template(loaded.tokenizer->chat_template())
                                                             : parse_chat_template(a.chat_template);
  std::fprintf(stderr, "[serve] chat template %s (%s)\n", chat_template_name(chat_template),
               a.chat_template.empty() ? "detected from tokenizer_config.json" : "--chat-template");
  http.set_engine({loaded.model.get(), loaded.tokenizer.get(), &scheduler, chat_template});
  const PagePool& pool = scheduler.pool();
  std::printf("[serve] ready: model '%s' at http://%s:%d/ — %lld sequences of up to %lld tokens, %lld KV pages "
              "(%.1f MiB), MTP speculative decoding %s\n",
              so.model_id.c_str(), a.host.c_str(), port, (long long)sched.parallel, (long long)sched.context,
              (long long)pool.num_pages(), double(pool.bytes()) / (1 << 20),
              sched.mtp ? "on" : loaded.model->weights.mtp.empty() ? "off (no MTP module)" : "off (--no-mtp)");
  std::fflush(stdout);

  int sig = 0;
  sigwait(&signals, &sig);
  std::fprintf(stderr, "[serve] %s: finishing running requests, refusing new ones\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
  http.begin_drain();
  scheduler.drain_and_stop();
  // Give streams a moment to write their last chunks before the listener closes.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  http.stop();
  std::fprintf(stderr, "[serve] stopped\n");
  return 0;
}

}  // namespace

Runner add_serve(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "serve", "OpenAI-compatible HTTP server: /v1/chat/completions, /v1/completions (streaming), /v1/models, "
               "/health, /metrics, /tokenize, /detokenize and a web chat page at /");
  cmd->add_option("--model", a->model_dir, "Model directory (config.json, safetensors, tokenizer.json)")->required();
  cmd->add_option("--host", a->host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", a->port, "Port to listen on (0 = any free port)")->capture_default_str()->check(CLI::Range(0, 65535));
  cmd->add_option("--parallel", a->parallel, "Sequences decoded at once (continuous batching)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--ctx", a->context, "Context per sequence: prompt + reply tokens")
      ->capture_default_str()->check(CLI::Range(int64_t(2), int64_t(1) << 24));
  cmd->add_option("--kv-pages", a->kv_pages, "Latent-KV pool size in 64-token pages (0 = parallel × ctx / 64)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--api-key", a->api_key, "Require 'Authorization: Bearer KEY' (not on /health and /)");
  cmd->add_option("--reasoning-format", a->reasoning_format,
                  "deepseek: text up to </think> goes to reasoning_content; none: left inline")
      ->capture_default_str()->check(CLI::IsMember({"deepseek", "none"}));
  cmd->add_option("--chat-template", a->chat_template,
                  "deepseek-v3 or deepseek-r1 (default: recognised from the model's tokenizer_config.json)")
      ->check(CLI::IsMember({"deepseek-v3", "deepseek-r1"}));
  cmd->add_option("--max-queue", a->max_queue, "Waiting requests beyond which new ones get 503 with Retry-After")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--step-tokens", a->step_tokens, "Prefill tokens per scheduler step (chunked prefill budget)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_flag("--batch-invariant", a->batch_invariant,
                "Prefill every prompt in the same 512-token chunks as dsv3 generate, so replies equal its bit for bit");
  cmd->add_flag("--no-mtp", a->no_mtp,
                "Decode one token per step even when the checkpoint has an MTP module (speculation is on by default)");
  cmd->add_option("--mtp-draft-vocab", a->mtp_draft_vocab,
                  "MTP drafts among the first N ids only (the most frequent in a BPE vocabulary): a smaller draft "
                  "head, the same output (0 = the whole vocabulary)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--mtp-min-acceptance", a->mtp_min_acceptance,
                  "A sequence drafts while at least this fraction of its recent drafts was accepted (it retries "
                  "every 16 tokens); 0 = always draft")
      ->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--precision", a->precision, "Activation precision in matmuls: bf16, f32 or fp8")
      ->capture_default_str()->check(CLI::IsMember({"bf16", "f32", "fp8"}));
  cmd->add_option("--model-id", a->model_id, "Name in /v1/models and accepted in requests (default: the directory name)");
  cmd->add_option("--max-body-mb", a->max_body_mb, "Largest request body accepted, MiB")
      ->capture_default_str()->check(CLI::PositiveNumber);
  return [a] { return run_serve(*a); };
}

}  // namespace dsv3::cli
