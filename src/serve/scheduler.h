// Continuous batching over the inference path: one scheduler loop owns the model, the latent-KV page
// pool and every running sequence, and each step advances all of them — the next token of every
// decoding sequence plus chunks of the prompts still being prefilled (chunked prefill, a per-step token
// budget) — so requests join and leave between steps. Each request samples with its own Sampler (seed,
// temperature, top-k/p), stop strings and token budget.
//
// A sequence is its token list (prompt, then each sampled token once it is fed back) and a KVCache over
// pool pages; the positions the cache holds trail the list by the tokens still to run. A step runs
// every sequence's next chunk (StepRunner) and samples from the chunks that reach the end of their
// list, so decoding is the one-token case of prefill. Full pages are published to the pool's prefix
// cache; a new request maps the published pages its prompt starts with (page_pool.h).
//
// Pages are taken as positions are reached. When the pool runs dry, the most recently admitted
// sequence is preempted: its pages are released (the full ones stay cached) and it goes back to the
// front of the queue with its generated tokens, to be recomputed — mostly by prefix hits — later; its
// client sees no gap but time. Memory is the pool's, fixed at start.
//
// The forward passes of a step go through StepRunner::run: one forward_batch over every sequence's
// chunk, so each weight is read once per step for all of them (model.h).
//
// Speculative decoding (SchedulerOptions::mtp, infer/speculative.h): after a step the MTP module runs
// over the positions computed so far (one batched pass for all sequences) and drafts the token after
// each decoding sequence's next one; the next step verifies both in a 2-row chunk. A sequence whose
// drafts are mostly rejected stops drafting (a draft costs its verification row and the MTP head) and
// tries again now and then; meanwhile its MTP rows are computed in batches of positions. A rejected
// draft's KV row is forgotten by truncating the cache (the page stays mapped and is simply overwritten);
// pages are published to the prefix cache only once their MTP rows are complete too, so a prefix hit
// brings both. Emitted tokens go through the same stop, logprob and length checks one at a time.
//
// Bit-for-bit equality with `generate` (batch_invariant): each sequence's chunk runs on its own, as
// generate's forward() does, and a prompt runs in the same chunks (ForwardOptions::prefill_chunk from
// position 0): the scheduler never splits a chunk to fit the step budget and rounds prefix reuse down
// to a chunk boundary, and every request's tokens then equal generate's for the same prompt and seed.
// Without it, rows of several sequences share kernels that block by row count and chunk boundaries move
// with the traffic; logits then differ in the last bits (the naive and absorbed attention forms and
// GEMM blockings round differently).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "infer/sampler.h"
#include "io/tokenizer.h"
#include "model/model.h"
#include "serve/page_pool.h"

namespace dsv3 {

struct SchedulerOptions {
  int64_t parallel = 4;       // sequences running at once
  int64_t context = 4096;     // positions per sequence (prompt + generated)
  int64_t kv_pages = 0;       // pool size; 0 = parallel · ceil(context / 64)
  int64_t max_queue = 64;     // waiting requests (beyond those free slots take) past which submit() refuses
  int64_t step_tokens = 512;  // prefill tokens per step (decode tokens take from it first)
  bool batch_invariant = false;
  bool mtp = false;              // speculative decoding with MTP module 0 (the checkpoint must have one)
  int64_t mtp_draft_vocab = 0;   // drafts among the first ids only (0 or more than the vocabulary: all)
  double mtp_min_acceptance = 0.5;  // a sequence drafts while its recent acceptance rate is at least this
  ForwardOptions forward;
};

struct CompletionParams {
  std::vector<int32_t> prompt;
  int64_t max_tokens = 0;  // 0 = up to the context
  SamplingParams sampling;
  std::vector<std::string> stop;
  std::vector<int32_t> stop_tokens;  // end the reply without emitting them (EOS)
  int top_logprobs = -1;             // -1: no log-probabilities; 0..20: the sampled token's and this many others
};

enum class FinishReason { none, stop, length, cancelled, error };
// "stop", "length", ... (OpenAI's finish_reason)
inline const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::none: return "none";
    case FinishReason::stop: return "stop";
    case FinishReason::length: return "length";
    case FinishReason::cancelled: return "cancelled";
    case FinishReason::error: return "error";
  }
  return "?";
}

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;  // most likely tokens first
};

// What arrived for a request since the previous RequestHandle::next().
struct RequestUpdate {
  std::string text;  // whole UTF-8 characters, stop strings removed
  std::vector<TokenLogprob> logprobs;  // of the tokens sampled since (when asked for)
  FinishReason finish = FinishReason::none;  // set once, on the last update
  std::string error;
};

struct RequestResult {
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;      // prompt positions supplied by the prefix cache
  int64_t completion_tokens = 0;  // tokens sampled (a stop token included)
  double queue_seconds = 0;       // submit → admission
  double prefill_seconds = 0;     // admission → first token
  double decode_seconds = 0;      // first token → last
  int64_t drafted_tokens = 0;     // MTP drafts verified (speculative decoding)
  int64_t accepted_tokens = 0;    // of which accepted
};

// Shared by the client's thread and the scheduler's.
class RequestHandle {
 public:
  // Waits up to `timeout` for news and returns it (empty text and finish none on a timeout).
  RequestUpdate next(std::chrono::milliseconds timeout);
  // Ends the request (a client that went away): its pages are released at the next step.
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }
  RequestResult result() const;

 private:
  friend class Scheduler;
  void post(std::string_view text, const TokenLogprob* logprob, FinishReason finish, std::string error = {});

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  RequestUpdate pending_;
  bool finished_ = false;
  RequestResult result_;
  std::atomic<bool> cancelled_{false};
};

struct SchedulerMetrics {
  int64_t running = 0, queued = 0;
  int64_t prompt_tokens = 0, generated_tokens = 0, cached_prompt_tokens = 0;  // cumulative
  int64_t requests_finished = 0, requests_rejected = 0, preemptions = 0;      // cumulative
  int64_t drafted_tokens = 0, accepted_tokens = 0;                            // cumulative (MTP)
  double prefill_tokens_per_second = 0, decode_tokens_per_second = 0;         // over the last 10 s
  PagePoolStats pages;
};

// One forward chunk of a step.
struct StepItem {
  KVCache* cache = nullptr;
  const int32_t* tokens = nullptr;
  int64_t n = 0;
  float* logits = nullptr;  // [vocab] of the chunk's last position, or null when not needed
  float* hidden = nullptr;  // [n, H] final hidden states (for the MTP module), or null
  bool logits_per_row = false;  // logits [n, vocab] for every row (verifying a draft)
};

// Runs the forward passes of one step: all items as one batch (forward_batch), or each on its own when
// batch_invariant. The caches of the items share `scratch`.
class StepRunner {
 public:
  StepRunner(const Model& model, const ForwardOptions& options, bool batch_invariant, Scratch& scratch)
      : model_(model), options_(options), batch_invariant_(batch_invariant), scratch_(scratch) {}
  void run(std::vector<StepItem>& items);
  // The MTP module over the items (drafting), with head_rows = draft_vocab.
  void run_mtp(std::vector<MtpItem>& items, int64_t draft_vocab);

 private:
  const Model& model_;
  ForwardOptions options_;
  bool batch_invariant_;
  Scratch& scratch_;
  std::vector<BatchItem> batch_;
};

class Scheduler {
 public:
  // `tokenizer` decodes the replies (each request brings its own sampling mask in CompletionParams::sampling).
  Scheduler(const Model& model, const Tokenizer& tokenizer, const SchedulerOptions& options);
  ~Scheduler();

  // Queues a request. nullptr when max_queue requests already wait beyond those the free slots will
  // take (or the scheduler is draining); errors in the request (empty prompt, too long for the context,
  // ids outside the vocabulary) throw dsv3::Error with a message for the client.
  std::shared_ptr<RequestHandle> submit(CompletionParams params);

  // Runs one step in the calling thread; false when there was nothing to do. (Tests drive it directly;
  // servers call start().)
  bool step();
  // Runs steps in a thread of its own until stop().
  void start();
  // Refuses new requests, finishes the running and queued ones, then ends the thread.
  void drain_and_stop();

  SchedulerMetrics metrics() const;
  const SchedulerOptions& options() const { return options_; }
  const PagePool& pool() const { return pool_; }

 private:
  struct Sequence;
  void admit();
  bool map_prefix(Sequence& s);
  bool reserve_pages(Sequence& s, int64_t positions);
  void preempt(Sequence& s);
  void release(Sequence& s);
  void publish_full_pages(Sequence& s);
  void after_token(Sequence& s, const float* logits, int32_t token);
  void verify_draft(Sequence& s, int64_t pos, const float* logits);
  void draft_next_tokens(const std::vector<Sequence*>& computed, const std::vector<int64_t>& first_pos);
  void finish(Sequence& s, FinishReason reason, std::string error = {});
  void loop();

  const Model& model_;
  const Tokenizer& tokenizer_;
  SchedulerOptions options_;
  PagePool pool_;
  Scratch scratch_;
  StepRunner runner_;
  std::vector<float> logits_;  // [running, 2, vocab] (two rows when verifying a draft)
  std::vector<float> draft_logits_;  // [running, draft vocab]

  mutable std::mutex mutex_;  // guards waiting_, draining_, metrics_
  std::condition_variable work_;
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;  // owned by the scheduler thread
  bool draining_ = false, stopping_ = false;
  uint64_t arrivals_ = 0;
  SchedulerMetrics metrics_;
  std::deque<std::pair<std::chrono::steady_clock::time_point, std::pair<int64_t, int64_t>>> recent_;
  std::thread thread_;
};

}  // namespace dsv3
