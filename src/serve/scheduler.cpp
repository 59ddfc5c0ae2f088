#include "serve/scheduler.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "infer/speculative.h"
#include "serve/stop_strings.h"

namespace dsv3 {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// The sampled token's log-probability and the `top` most likely ones, from the model's distribution
// (before temperature and truncation, as OpenAI reports them).
TokenLogprob logprobs_of(const float* logits, int64_t vocab, int32_t token, int top) {
  const float log_z = float(log_sum_exp(logits, vocab));
  TokenLogprob lp;
  lp.token = token;
  lp.logprob = logits[token] - log_z;
  if (top > 0) {
    std::vector<int32_t> ids(static_cast<size_t>(vocab));
    for (int64_t i = 0; i < vocab; ++i) ids[size_t(i)] = int32_t(i);
    const int64_t k = std::min<int64_t>(top, vocab);
    std::partial_sort(ids.begin(), ids.begin() + k, ids.end(),
                      [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
    for (int64_t i = 0; i < k; ++i) lp.top.emplace_back(ids[size_t(i)], logits[ids[size_t(i)]] - log_z);
  }
  return lp;
}

}  // namespace

// ---- RequestHandle ----

RequestUpdate RequestHandle::next(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  cv_.wait_for(lock, timeout, [&] {
    return !pending_.text.empty() || !pending_.logprobs.empty() || pending_.finish != FinishReason::none;
  });
  RequestUpdate out = std::move(pending_);
  pending_ = RequestUpdate{};
  return out;
}

RequestResult RequestHandle::result() const {
  std::lock_guard lock(mutex_);
  return result_;
}

void RequestHandle::post(std::string_view text, const TokenLogprob* logprob, FinishReason finish, std::string error) {
  {
    std::lock_guard lock(mutex_);
    pending_.text += text;
    if (logprob) pending_.logprobs.push_back(*logprob);
    if (finish != FinishReason::none && !finished_) {
      finished_ = true;
      pending_.finish = finish;
      pending_.error = std::move(error);
    }
  }
  cv_.notify_all();
}

// ---- StepRunner ----

void StepRunner::run(std::vector<StepItem>& items) {
  if (items.empty()) return;
  ForwardOptions last_only = options_;
  last_only.all_logits = false;
  batch_.clear();
  for (const StepItem& item : items)
    batch_.push_back(BatchItem{item.cache, item.tokens, item.n, item.logits, item.hidden, item.logits_per_row});
  if (!batch_invariant_) {
    forward_batch(model_, batch_.data(), int64_t(batch_.size()), last_only, scratch_);
    return;
  }
  for (BatchItem& item : batch_) forward_batch(model_, &item, 1, last_only, scratch_);
}

void StepRunner::run_mtp(std::vector<MtpItem>& items, int64_t draft_vocab) {
  if (items.empty()) return;
  ForwardOptions drafting = options_;
  drafting.all_logits = false;
  drafting.head_rows = draft_vocab;
  if (!batch_invariant_) {
    mtp_forward_batch(model_, 0, items.data(), int64_t(items.size()), drafting, scratch_);
    return;
  }
  for (MtpItem& item : items) mtp_forward_batch(model_, 0, &item, 1, drafting, scratch_);
}

// ---- Scheduler ----

struct Scheduler::Sequence {
  Sequence(const ModelConfig& config, int64_t context, Scratch& scratch, const Tokenizer& tokenizer,
           CompletionParams p)
      : params(std::move(p)),
        tokens(params.prompt),
        cache(config, context, scratch),
        sampler(params.sampling),
        decoder(tokenizer, /*skip_special=*/true),
        stop(params.stop) {}

  std::shared_ptr<RequestHandle> handle = std::make_shared<RequestHandle>();
  CompletionParams params;
  std::vector<int32_t> tokens;  // prompt, then the sampled tokens that are fed back
  KVCache cache;                // positions [0, cache.size()) of `tokens` are computed
  std::vector<PageId> pages;    // mapped into `cache`, in order
  std::vector<uint64_t> chain;  // chain hash of each published (or prefix-hit) page
  Sampler sampler;
  TokenStreamDecoder decoder;
  StopMatcher stop;
  int64_t generated = 0;
  int64_t cached_tokens = 0;
  // Speculative decoding: the drafted token after tokens.back() (-1: none) and its draft distribution
  // (sampled requests); the final hidden states of the rows this step computed, and of the positions
  // from cache.mtp_size(0) on that the MTP module has not run over yet; how often drafts were accepted
  // lately (1 = always) and the tokens decoded since the last draft.
  int32_t draft = -1;
  std::vector<double> draft_q;
  std::vector<float> step_hidden;
  std::vector<float> mtp_hidden;
  double acceptance = 1.0;
  int64_t since_draft = 0;
  int64_t drafted = 0, accepted = 0;
  uint64_t arrival = 0;
  bool counted_prompt = false;
  Clock::time_point submitted, admitted, first_token;
};

Scheduler::Scheduler(const Model& model, const Tokenizer& tokenizer, const SchedulerOptions& options)
    : model_(model),
      tokenizer_(tokenizer),
      options_(options),
      pool_(model.config, options.kv_pages > 0 ? options.kv_pages
                                               : options.parallel * ((options.context + kKvPageTokens - 1) / kKvPageTokens)),
      runner_(model, options.forward, options.batch_invariant, scratch_) {
  DSV3_CHECK(options.parallel >= 1, "[serve] --parallel must be at least 1, got ", options.parallel);
  DSV3_CHECK(options.context >= 2, "[serve] --ctx must be at least 2 tokens, got ", options.context);
  DSV3_CHECK(options.step_tokens >= 1, "[serve] the step budget must be at least 1 token");
  DSV3_CHECK(options.max_queue >= 0, "[serve] --max-queue must not be negative");
  DSV3_CHECK(!options.mtp || !model.weights.mtp.empty(), "[serve] speculative decoding needs a checkpoint with an MTP "
             "module (num_nextn_predict_layers >= 1); this one has none: serve without --mtp");
  DSV3_CHECK(options.mtp_draft_vocab >= 0, "[serve] --mtp-draft-vocab must not be negative");
  DSV3_CHECK(options.mtp_min_acceptance >= 0 && options.mtp_min_acceptance <= 1,
             "[serve] --mtp-min-acceptance must be in [0, 1], got ", options.mtp_min_acceptance);
  options_.kv_pages = pool_.num_pages();
  // A sequence at full context must fit in the pool on its own, or it could never finish.
  DSV3_CHECK(options_.kv_pages * kKvPageTokens >= options.context, "[serve] --kv-pages ", options_.kv_pages,
             " hold ", options_.kv_pages * kKvPageTokens, " positions, fewer than one sequence's context of ",
             options.context, ": raise --kv-pages or lower --ctx");
  metrics_.pages = pool_.stats();
}

Scheduler::~Scheduler() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (auto& s : running_) release(*s);
}

std::shared_ptr<RequestHandle> Scheduler::submit(CompletionParams params) {
  const int64_t vocab = model_.config.vocab_size, n = int64_t(params.prompt.size());
  DSV3_CHECK(n > 0, "the prompt is empty");
  for (int32_t t : params.prompt)
    DSV3_CHECK(t >= 0 && t < vocab, "prompt token ", t, " is outside the model's vocabulary [0, ", vocab, ")");
  DSV3_CHECK(n < options_.context, "the prompt is ", n, " tokens; the context is ", options_.context,
             " tokens (prompt and reply together)");
  DSV3_CHECK(params.max_tokens >= 0, "max_tokens must be positive");
  params.max_tokens = params.max_tokens == 0 ? options_.context - n : std::min(params.max_tokens, options_.context - n);
  auto seq = std::make_unique<Sequence>(model_.config, options_.context, scratch_, tokenizer_, std::move(params));
  seq->submitted = Clock::now();
  std::shared_ptr<RequestHandle> handle = seq->handle;
  {
    std::lock_guard lock(mutex_);
    // Requests that free slots will admit at the next step do not count as waiting: with --max-queue 0
    // a request still runs when a slot is free, and only one that would have to wait is refused.
    const int64_t free_slots = std::max<int64_t>(options_.parallel - metrics_.running, 0);
    if (draining_ || stopping_ || int64_t(waiting_.size()) >= options_.max_queue + free_slots) {
      ++metrics_.requests_rejected;
      return nullptr;
    }
    seq->arrival = ++arrivals_;
    waiting_.push_back(std::move(seq));
    metrics_.queued = int64_t(waiting_.size());
  }
  work_.notify_all();
  return handle;
}

bool Scheduler::map_prefix(Sequence& s) {
  // Reuse published pages while at least one token is left to run (its logits start the reply).
  const int64_t n = int64_t(s.tokens.size()), chunk = options_.forward.prefill_chunk;
  int64_t usable = (n - 1) / kKvPageTokens;
  if (options_.batch_invariant && chunk > 0) usable = (usable * kKvPageTokens / chunk) * chunk / kKvPageTokens;
  for (int64_t i = 0; i < usable; ++i) {
    const uint64_t parent = i == 0 ? 0 : s.chain[size_t(i - 1)];
    const std::span<const int32_t> block(s.tokens.data() + i * kKvPageTokens, size_t(kKvPageTokens));
    const std::optional<PageId> page = pool_.lookup(parent, block);
    if (!page) break;
    s.pages.push_back(*page);
    s.chain.push_back(PagePool::chain_hash(parent, block));
    s.cache.map_page(pool_.page(*page));
  }
  if (!s.counted_prompt) s.cached_tokens = int64_t(s.pages.size()) * kKvPageTokens;  // first admission only
  s.cache.set_size(int64_t(s.pages.size()) * kKvPageTokens);
  if (options_.mtp) s.cache.set_mtp_size(0, s.cache.size());  // published pages hold their MTP rows
  return true;
}

bool Scheduler::reserve_pages(Sequence& s, int64_t positions) {
  while (s.cache.mapped_pages() * kKvPageTokens < positions) {
    const std::optional<PageId> page = pool_.allocate();
    if (!page) return false;
    s.pages.push_back(*page);
    s.cache.map_page(pool_.page(*page));
  }
  return true;
}

void Scheduler::release(Sequence& s) {
  for (PageId p : s.pages) pool_.release(p);
  s.pages.clear();
  s.chain.clear();
  s.cache.unmap_pages(0);
}

void Scheduler::publish_full_pages(Sequence& s) {
  // With speculation, a page is complete once the MTP module has run over it too.
  const int64_t done = options_.mtp ? std::min(s.cache.size(), s.cache.mtp_size(0)) : s.cache.size();
  const int64_t full = done / kKvPageTokens;
  for (int64_t i = int64_t(s.chain.size()); i < full; ++i) {
    const uint64_t parent = i == 0 ? 0 : s.chain[size_t(i - 1)];
    const std::span<const int32_t> block(s.tokens.data() + i * kKvPageTokens, size_t(kKvPageTokens));
    pool_.publish(s.pages[size_t(i)], parent, block);
    s.chain.push_back(PagePool::chain_hash(parent, block));
  }
}

void Scheduler::preempt(Sequence& s) {
  // Back to the queue's front with the tokens it has: recomputed later, mostly from its cached pages.
  release(s);
  s.draft = -1;
  s.mtp_hidden.clear();  // the MTP rows restart at the cached pages' end
  std::lock_guard lock(mutex_);
  ++metrics_.preemptions;
}

void Scheduler::finish(Sequence& s, FinishReason reason, std::string error) {
  std::string tail;
  if (reason == FinishReason::stop || reason == FinishReason::length) {
    tail = s.stop.push(s.decoder.flush());
    tail += s.stop.flush();
  }
  const Clock::time_point now = Clock::now();
  {
    std::lock_guard lock(s.handle->mutex_);
    RequestResult& r = s.handle->result_;
    r.prompt_tokens = int64_t(s.params.prompt.size());
    r.cached_tokens = s.cached_tokens;
    r.completion_tokens = s.generated;
    r.queue_seconds = seconds_between(s.submitted, s.admitted);
    if (s.generated > 0) {
      r.prefill_seconds = seconds_between(s.admitted, s.first_token);
      r.decode_seconds = seconds_between(s.first_token, now);
    }
    r.drafted_tokens = s.drafted;
    r.accepted_tokens = s.accepted;
  }
  s.handle->post(tail, nullptr, reason, std::move(error));
  release(s);
  std::lock_guard lock(mutex_);
  ++metrics_.requests_finished;
}

void Scheduler::after_token(Sequence& s, const float* logits, int32_t token) {
  const int64_t vocab = model_.config.vocab_size;
  if (s.generated == 0) s.first_token = Clock::now();
  ++s.generated;
  TokenLogprob lp;
  if (s.params.top_logprobs >= 0) lp = logprobs_of(logits, vocab, token, s.params.top_logprobs);
  const TokenLogprob* lp_ptr = s.params.top_logprobs >= 0 ? &lp : nullptr;
  const auto& stops = s.params.stop_tokens;
  if (std::find(stops.begin(), stops.end(), token) != stops.end()) {
    if (lp_ptr) s.handle->post({}, lp_ptr, FinishReason::none);
    finish(s, FinishReason::stop);
    return;
  }
  const std::string text = s.stop.push(s.decoder.push(token));
  s.handle->post(text, lp_ptr, FinishReason::none);
  if (s.stop.stopped()) {
    finish(s, FinishReason::stop);
  } else if (s.generated >= s.params.max_tokens || int64_t(s.tokens.size()) + 1 > options_.context) {
    finish(s, FinishReason::length);
  } else {
    s.tokens.push_back(token);
  }
}

// The step ran the pending token and the draft at positions pos and pos + 1 (logits: [2, vocab]). The
// draft is kept or replaced by the rule of speculative sampling (greedy: kept iff it is the argmax); a
// kept draft brings the bonus token from the second row, a replaced one loses its KV row.
void Scheduler::verify_draft(Sequence& s, int64_t pos, const float* logits) {
  const int64_t V = model_.config.vocab_size;
  const int32_t draft = s.tokens.back();
  s.tokens.pop_back();  // after_token appends what is emitted
  ++s.drafted;
  bool accepted = false;
  int32_t next = 0;
  if (s.sampler.params().temperature == 0.0f) {
    next = s.sampler.sample(logits, V);
    accepted = next == draft;
  } else {
    thread_local std::vector<double> p;
    s.sampler.distribution(logits, V, p);
    next = accept_or_resample(p, s.draft_q, draft, s.sampler, &accepted);
  }
  if (!accepted) s.cache.truncate(pos + 1);
  s.acceptance = 0.875 * s.acceptance + (accepted ? 0.125 : 0.0);
  after_token(s, logits, next);
  if (!accepted || s.handle->finished_) return;
  ++s.accepted;
  after_token(s, logits + V, s.sampler.sample(logits + V, V));
}

// Keeps the hidden states of the rows each sequence computed this step (their next tokens are all known
// now) and runs the MTP module over those it has not seen, batched over the sequences, when a sequence
// drafts or has kMtpRows pending: a sequence drafts when it decodes next with room for two more tokens
// and its drafts have been accepted often enough lately, or kProbeTokens tokens after its last draft
// (to notice when they would be again). Between drafts the module's rows wait, so a sequence whose drafts
// fail costs one MTP pass over many rows instead of one per token.
void Scheduler::draft_next_tokens(const std::vector<Sequence*>& computed, const std::vector<int64_t>& first_pos) {
  constexpr int64_t kMtpRows = 16, kProbeTokens = 16;
  const int64_t V = model_.config.vocab_size, H = model_.config.hidden_size;
  const int64_t draft_vocab = options_.mtp_draft_vocab > 0 ? std::min(options_.mtp_draft_vocab, V) : V;
  draft_logits_.resize(computed.size() * size_t(draft_vocab));
  std::vector<MtpItem> items;
  std::vector<Sequence*> ran, drafting;
  for (size_t i = 0; i < computed.size(); ++i) {
    Sequence& s = *computed[i];
    const int64_t pos = first_pos[i];
    const int64_t end = std::min(s.cache.size(), int64_t(s.tokens.size()) - 1);  // rows with a known next token
    const int64_t first = s.cache.mtp_size(0);
    DSV3_CHECK(first + int64_t(s.mtp_hidden.size()) / H == pos, "[serve] MTP rows out of step: ", first, " + ",
               s.mtp_hidden.size() / size_t(H), " pending, the step began at ", pos);
    s.mtp_hidden.insert(s.mtp_hidden.end(), s.step_hidden.begin(), s.step_hidden.begin() + (end - pos) * H);
    const int64_t rows = end - first;
    const bool decoding = int64_t(s.tokens.size()) - s.cache.size() == 1;
    const bool room = s.generated + 2 <= s.params.max_tokens && int64_t(s.tokens.size()) + 1 <= options_.context;
    const bool draft = decoding && room && (s.acceptance >= options_.mtp_min_acceptance || s.since_draft >= kProbeTokens);
    if (decoding && !draft) ++s.since_draft;
    if (rows <= 0 || (!draft && rows < kMtpRows)) continue;
    MtpItem item{&s.cache, s.mtp_hidden.data(), s.tokens.data() + first + 1, rows, nullptr, nullptr};
    if (draft) {
      item.logits = draft_logits_.data() + drafting.size() * size_t(draft_vocab);
      drafting.push_back(&s);
      s.since_draft = 0;
    }
    items.push_back(item);
    ran.push_back(&s);
  }
  runner_.run_mtp(items, draft_vocab);
  for (Sequence* s : ran) s->mtp_hidden.clear();
  for (size_t i = 0; i < drafting.size(); ++i) {
    Sequence& s = *drafting[i];
    const float* logits = draft_logits_.data() + i * size_t(draft_vocab);
    if (s.sampler.params().temperature == 0.0f) {
      s.draft = s.sampler.sample(logits, draft_vocab);
    } else {
      s.sampler.distribution(logits, draft_vocab, s.draft_q);
      s.draft = s.sampler.draw(s.draft_q);
      s.draft_q.resize(size_t(V), 0.0);  // ids past the draft vocabulary are never drafted
    }
  }
  for (Sequence* s : ran) publish_full_pages(*s);
}

void Scheduler::admit() {
  std::lock_guard lock(mutex_);
  while (!waiting_.empty() && int64_t(running_.size()) < options_.parallel) {
    Sequence& s = *waiting_.front();
    if (s.handle->cancelled()) {
      waiting_.pop_front();
      continue;  // never started: nothing to release or report
    }
    map_prefix(s);
    // Admit only when its next chunk's pages are there (the rest come as it runs).
    const int64_t first_chunk = std::min<int64_t>(int64_t(s.tokens.size()), s.cache.size() + options_.step_tokens);
    if (!reserve_pages(s, first_chunk)) {
      // Wait for running sequences to free pages, holding none meanwhile (its prefix pages stay cached).
      release(s);
      break;
    }
    if (s.admitted == Clock::time_point{}) s.admitted = Clock::now();
    if (!s.counted_prompt) {
      metrics_.prompt_tokens += int64_t(s.params.prompt.size());
      metrics_.cached_prompt_tokens += s.cached_tokens;
      s.counted_prompt = true;
    }
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
  metrics_.queued = int64_t(waiting_.size());
  metrics_.running = int64_t(running_.size());
  metrics_.pages = pool_.stats();  // cancelled sequences just released theirs, even if nothing runs now
}

bool Scheduler::step() {
  // Cancelled requests leave first; their pages go back at once.
  for (auto& s : running_)
    if (s->handle->cancelled()) finish(*s, FinishReason::cancelled);
  std::erase_if(running_, [](const auto& s) { return s->handle->finished_ || s->handle->cancelled(); });
  admit();
  if (running_.empty()) return false;

  // Decode tokens first (they take from the budget), then prefill chunks, oldest first.
  std::vector<Sequence*> order;
  for (auto& s : running_) order.push_back(s.get());
  std::stable_sort(order.begin(), order.end(), [](const Sequence* a, const Sequence* b) {
    const bool da = a->tokens.size() - a->cache.size() == 1, db = b->tokens.size() - b->cache.size() == 1;
    return da != db ? da : a->arrival < b->arrival;
  });
  int64_t budget = options_.step_tokens;
  const int64_t chunk_limit = options_.forward.prefill_chunk > 0 ? options_.forward.prefill_chunk : INT64_MAX;
  const int64_t V = model_.config.vocab_size, H = model_.config.hidden_size;
  std::vector<StepItem> items;
  std::vector<Sequence*> item_seq;
  std::vector<int64_t> item_pos;
  logits_.resize(running_.size() * 2 * size_t(V));
  std::vector<Sequence*> preempted;
  for (Sequence* s : order) {
    if (std::find(preempted.begin(), preempted.end(), s) != preempted.end()) continue;
    const int64_t pos = s->cache.size(), left = int64_t(s->tokens.size()) - pos;
    // Chunks end on multiples of the prefill chunk from position 0, as generate's do.
    int64_t n = std::min(left, chunk_limit - pos % chunk_limit);
    if (left > 1 && !options_.batch_invariant) n = std::min(n, std::max<int64_t>(budget, 0));
    if (n <= 0) continue;
    // A drafted token rides along with the pending one (2 rows), if its page can be had without
    // preempting anyone; else it is dropped and the step decodes one token.
    const bool verify = left == 1 && s->draft >= 0 && reserve_pages(*s, pos + 2);
    if (verify) {
      s->tokens.push_back(s->draft);
      n = 2;
    }
    s->draft = -1;
    // Pages for the chunk; when the pool is dry, preempt the newest other sequence, else wait.
    while (!reserve_pages(*s, pos + n)) {
      Sequence* victim = nullptr;
      for (Sequence* o : order)
        if (o->arrival > s->arrival && (!victim || o->arrival > victim->arrival) &&
            std::find(preempted.begin(), preempted.end(), o) == preempted.end() &&
            std::find(item_seq.begin(), item_seq.end(), o) == item_seq.end())
          victim = o;
      if (!victim) break;
      preempt(*victim);
      preempted.push_back(victim);
    }
    if (s->cache.mapped_pages() * kKvPageTokens < pos + n) continue;
    budget -= n;
    const bool last = pos + n == int64_t(s->tokens.size());
    StepItem item{&s->cache, s->tokens.data() + pos, n, last ? logits_.data() + items.size() * 2 * size_t(V) : nullptr};
    if (options_.mtp) {
      s->step_hidden.resize(size_t(n * H));
      item.hidden = s->step_hidden.data();
    }
    item.logits_per_row = verify;
    items.push_back(item);
    item_seq.push_back(s);
    item_pos.push_back(pos);
  }
  // Preempted sequences go back to the front of the queue, oldest first.
  if (!preempted.empty()) {
    std::sort(preempted.begin(), preempted.end(), [](auto* a, auto* b) { return a->arrival > b->arrival; });
    std::lock_guard lock(mutex_);
    for (Sequence* p : preempted) {
      auto it = std::find_if(running_.begin(), running_.end(), [&](const auto& u) { return u.get() == p; });
      waiting_.push_front(std::move(*it));
      running_.erase(it);
    }
    metrics_.queued = int64_t(waiting_.size());
    metrics_.running = int64_t(running_.size());
  }

  runner_.run(items);

  int64_t prefilled = 0, sampled = 0, drafted = 0, accepted = 0;
  std::vector<Sequence*> computed;  // sequences still running, whose rows the MTP module runs over next
  std::vector<int64_t> computed_pos;
  for (size_t i = 0; i < items.size(); ++i) {
    Sequence& s = *item_seq[i];
    publish_full_pages(s);
    const int64_t generated_before = s.generated, accepted_before = s.accepted;
    if (items[i].logits_per_row) {
      verify_draft(s, item_pos[i], items[i].logits);
      ++drafted;
      accepted += s.accepted - accepted_before;
    } else if (items[i].logits) {
      after_token(s, items[i].logits, s.sampler.sample(items[i].logits, V));
      if (items[i].n > 1) prefilled += items[i].n;
    } else {
      prefilled += items[i].n;
    }
    sampled += s.generated - generated_before;
    if (options_.mtp && !s.handle->finished_) {
      computed.push_back(&s);
      computed_pos.push_back(item_pos[i]);
    }
  }
  if (options_.mtp) draft_next_tokens(computed, computed_pos);
  std::erase_if(running_, [](const auto& s) { return s->handle->finished_; });
  {
    std::lock_guard lock(mutex_);
    const Clock::time_point now = Clock::now();
    metrics_.generated_tokens += sampled;
    metrics_.drafted_tokens += drafted;
    metrics_.accepted_tokens += accepted;
    recent_.push_back({now, {prefilled, sampled}});
    while (!recent_.empty() && seconds_between(recent_.front().first, now) > 10) recent_.pop_front();
    metrics_.running = int64_t(running_.size());
    metrics_.pages = pool_.stats();
  }
  return true;
}

void Scheduler::loop() {
  while (true) {
    {
      std::unique_lock lock(mutex_);
      work_.wait(lock, [&] { return stopping_ || draining_ || !waiting_.empty() || !running_.empty(); });
      if (stopping_ || (draining_ && waiting_.empty() && running_.empty())) return;
    }
    if (!step()) {  // queued work that cannot start yet: look again shortly
      std::unique_lock lock(mutex_);
      work_.wait_for(lock, std::chrono::milliseconds(10));
    }
  }
}

void Scheduler::start() {
  DSV3_CHECK(!thread_.joinable(), "[serve] the scheduler is already running");
  thread_ = std::thread([this] { loop(); });
}

void Scheduler::drain_and_stop() {
  {
    std::lock_guard lock(mutex_);
    draining_ = true;
  }
  work_.notify_all();
  if (thread_.joinable()) thread_.join();
}

SchedulerMetrics Scheduler::metrics() const {
  std::lock_guard lock(mutex_);
  SchedulerMetrics m = metrics_;
  if (recent_.size() >= 2) {
    const double span = seconds_between(recent_.front().first, recent_.back().first);
    int64_t p = 0, g = 0;
    for (const auto& r : recent_) {
      p += r.second.first;
      g += r.second.second;
    }
    if (span > 0) {
      m.prefill_tokens_per_second = double(p) / span;
      m.decode_tokens_per_second = double(g) / span;
    }
  }
  return m;
}

}  // namespace dsv3
