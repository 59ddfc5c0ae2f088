// The serving core: the latent-KV page pool (prefix cache, eviction, exhaustion), stop strings across
// token boundaries, and the continuous-batching scheduler against generate().
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "infer/generator.h"
#include "io/bpe.h"
#include "serve/page_pool.h"
#include "serve/scheduler.h"
#include "serve/stop_strings.h"
#include "test_support.h"

namespace dsv3 {
namespace {

using nlohmann::json;

// ---- page pool ----

std::vector<int32_t> block(int32_t first) {
  std::vector<int32_t> b(static_cast<size_t>(kKvPageTokens));
  for (size_t i = 0; i < b.size(); ++i) b[i] = first + int32_t(i);
  return b;
}

TEST(PagePool, AllocatesEveryPageThenRunsDry) {
  PagePool pool(testing::tiny_v3_config(), 3);
  std::vector<PageId> got;
  for (int i = 0; i < 3; ++i) got.push_back(*pool.allocate());
  EXPECT_EQ(got, (std::vector<PageId>{0, 1, 2}));
  EXPECT_FALSE(pool.allocate().has_value());
  EXPECT_EQ(pool.stats().referenced, 3);
  pool.release(1);
  EXPECT_EQ(pool.stats().free, 1);
  EXPECT_EQ(*pool.allocate(), 1);
}

TEST(PagePool, PublishedChainsAreFoundOnlyWithTheirWholePrefix) {
  PagePool pool(testing::tiny_v3_config(), 4);
  const PageId a = *pool.allocate(), b = *pool.allocate();
  const uint64_t ha = PagePool::chain_hash(0, block(0));
  pool.publish(a, 0, block(0));
  pool.publish(b, ha, block(100));
  // The same second block after another first block is another chain.
  EXPECT_FALSE(pool.lookup(PagePool::chain_hash(0, block(1)), block(100)).has_value());
  EXPECT_FALSE(pool.lookup(0, block(1)).has_value());
  EXPECT_EQ(pool.lookup(0, block(0)), a);
  EXPECT_EQ(pool.lookup(ha, block(100)), b);
  EXPECT_EQ(pool.refs(a), 2);
  EXPECT_EQ(pool.stats().prefix_hits, 2);
  EXPECT_EQ(pool.stats().prefix_misses, 2);
}

TEST(PagePool, IdleCachedPagesAreReclaimedLeastRecentlyUsedFirstAndOnlyWhenNothingIsFree) {
  PagePool pool(testing::tiny_v3_config(), 3);
  const PageId a = *pool.allocate(), b = *pool.allocate();
  pool.publish(a, 0, block(0));
  pool.publish(b, 0, block(200));
  pool.release(a);  // idle: a, then b
  pool.release(b);
  EXPECT_EQ(pool.stats().cached_idle, 2);
  EXPECT_EQ(*pool.allocate(), 2);  // the free page goes first
  ASSERT_EQ(pool.lookup(0, block(0)), a);  // a hit makes a recently used (and referenced again)
  pool.release(a);                         // idle order now: b, a
  EXPECT_EQ(*pool.allocate(), b);          // b is reclaimed and leaves the cache
  EXPECT_EQ(pool.stats().evictions, 1);
  EXPECT_FALSE(pool.lookup(0, block(200)).has_value());
  EXPECT_EQ(pool.lookup(0, block(0)), a);
}

// ---- stop strings ----

TEST(StopMatcher, AStopStringSplitAnywhereEndsTheTextBeforeIt) {
  const std::string text = "The answer is 42.\n\nUser: next", stop = "\n\nUser:";
  const std::string expected = "The answer is 42.";
  for (size_t cut1 = 0; cut1 <= text.size(); ++cut1)
    for (size_t cut2 = cut1; cut2 <= text.size(); cut2 += 3) {
      StopMatcher m({stop, "never"});
      std::string out = m.push(text.substr(0, cut1));
      out += m.push(text.substr(cut1, cut2 - cut1));
      out += m.push(text.substr(cut2));
      out += m.flush();
      EXPECT_EQ(out, expected) << cut1 << " " << cut2;
      EXPECT_TRUE(m.stopped());
    }
}

TEST(StopMatcher, HoldsOnlyWhatCouldStillBecomeAStopString) {
  StopMatcher m({"abc", "xyz"});
  EXPECT_EQ(m.push("hello a"), "hello ");  // "a" could start "abc"
  EXPECT_EQ(m.push("b"), "");
  EXPECT_EQ(m.push("d x"), "abd ");
  EXPECT_EQ(m.push("y!"), "xy!");
  EXPECT_EQ(m.push("ab"), "");
  EXPECT_EQ(m.flush(), "ab");  // never completed: emitted at the end
  EXPECT_FALSE(m.stopped());
  StopMatcher first({"cd", "bc"});
  EXPECT_EQ(first.push("abcd"), "a");  // the earliest stop string wins
}

// ---- scheduler ----

// A byte-level tokenizer for the tiny model's 300 ids: ids 0–255 are the bytes, 256–298 added text
// tokens, 299 the end-of-sentence token.
Tokenizer byte_tokenizer() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[bytes_to_byte_level(std::string(1, char(b)))] = b;
  json added = json::array();
  for (int id = 256; id < 299; ++id)
    added.push_back({{"id", id}, {"content", "<t" + std::to_string(id) + ">"}, {"special", false}});
  added.push_back({{"id", 299}, {"content", "<eos>"}, {"special", true}});
  const json tok = {{"version", "1.0"},
                    {"added_tokens", added},
                    {"normalizer", nullptr},
                    {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
                    {"post_processor", nullptr},
                    {"decoder", {{"type", "ByteLevel"}}},
                    {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}}}};
  const json config = {{"eos_token", "<eos>"}};
  return Tokenizer::from_json_text(tok.dump(), config.dump(), "bytes.json");
}

struct TinyServing {
  TinyServing() : dir("serve"), tokenizer(byte_tokenizer()) {
    testing::write_tiny_checkpoint(testing::tiny_v3_config(), dir.path(), 3, DType::BF16, false, 0.3);
    model = load_model(dir.path());
  }
  testing::TempDir dir;
  std::unique_ptr<Model> model;
  Tokenizer tokenizer;
};

TinyServing& tiny() {
  static TinyServing t;
  return t;
}

std::vector<int32_t> prompt_of(int64_t n, uint32_t seed) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[size_t(i)] = int32_t((seed * 2654435761u + uint32_t(i) * 40503u) % 256u);
  return p;
}

ForwardOptions options_with_chunk(int64_t chunk) {
  ForwardOptions o;
  o.prefill_chunk = chunk;
  return o;
}

// The tokens generate() samples for the prompt, EOS stopping it.
std::vector<int32_t> generate_tokens(const CompletionParams& p, const ForwardOptions& options) {
  KVCache cache(tiny().model->config, int64_t(p.prompt.size()) + p.max_tokens);
  Sampler sampler(p.sampling);
  std::vector<int32_t> out;
  generate(*tiny().model, cache, {p.prompt, p.max_tokens, 299}, sampler, options, [&](int32_t t) {
    out.push_back(t);
    return true;
  });
  return out;
}

struct Collected {
  std::vector<int32_t> tokens;
  std::string text;
  FinishReason finish = FinishReason::none;
};

void drain_updates(const std::shared_ptr<RequestHandle>& h, Collected& c) {
  while (true) {
    RequestUpdate u = h->next(std::chrono::milliseconds(0));
    if (u.text.empty() && u.logprobs.empty() && u.finish == FinishReason::none) return;
    c.text += u.text;
    for (const TokenLogprob& lp : u.logprobs) c.tokens.push_back(lp.token);
    if (u.finish != FinishReason::none) c.finish = u.finish;
  }
}

CompletionParams request(int64_t prompt_tokens, uint32_t seed, float temperature, int64_t max_tokens) {
  CompletionParams p;
  p.prompt = prompt_of(prompt_tokens, seed);
  p.max_tokens = max_tokens;
  p.sampling.temperature = temperature;
  p.sampling.top_p = temperature > 0 ? 0.9f : 1.0f;
  p.sampling.seed = seed;
  p.stop_tokens = {299};
  p.top_logprobs = 0;  // the updates then carry each sampled token
  return p;
}

// Submits params[i] at step arrive_at_step[i] and steps until all the work is done (at most max_steps);
// returns each request's tokens, text and finish, and its handle in *handles.
std::vector<Collected> run_arrivals(Scheduler& sched, const std::vector<CompletionParams>& params,
                                    const std::vector<int>& arrive_at_step,
                                    std::vector<std::shared_ptr<RequestHandle>>* handles, int max_steps = 1000) {
  handles->assign(params.size(), nullptr);
  std::vector<Collected> got(params.size());
  const int last_arrival = *std::max_element(arrive_at_step.begin(), arrive_at_step.end());
  for (int step = 0; step < max_steps; ++step) {
    for (size_t i = 0; i < params.size(); ++i)
      if (arrive_at_step[i] == step) (*handles)[i] = sched.submit(params[i]);
    const bool worked = sched.step();
    for (size_t i = 0; i < params.size(); ++i)
      if ((*handles)[i]) drain_updates((*handles)[i], got[i]);
    if (!worked && step > last_arrival) break;
  }
  return got;
}

TEST(Scheduler, RequestsJoiningAndLeavingMidBatchGiveGeneratesTokens) {
  SchedulerOptions o;
  o.parallel = 3;
  o.context = 400;
  o.step_tokens = 48;
  o.batch_invariant = true;
  o.forward = options_with_chunk(64);
  Scheduler sched(*tiny().model, tiny().tokenizer, o);
  // Greedy and sampled, short and multi-chunk prompts, arriving at different steps; four requests
  // for three slots, so the last one waits for a slot.
  const std::vector<CompletionParams> params = {request(5, 1, 0.0f, 20), request(150, 2, 1.0f, 12),
                                                request(70, 3, 0.0f, 30), request(9, 4, 0.8f, 25)};
  std::vector<std::shared_ptr<RequestHandle>> handles;
  const std::vector<Collected> got = run_arrivals(sched, params, {0, 0, 3, 4}, &handles, 500);
  for (size_t i = 0; i < params.size(); ++i) {
    SCOPED_TRACE("request " + std::to_string(i));
    const std::vector<int32_t> expected = generate_tokens(params[i], o.forward);
    EXPECT_EQ(got[i].tokens, expected);
    EXPECT_NE(got[i].finish, FinishReason::none);
    EXPECT_EQ(handles[i]->result().completion_tokens, int64_t(expected.size()));
  }
  EXPECT_EQ(sched.pool().stats().referenced, 0);  // every page released
}

TEST(Scheduler, APromptStartingWithCachedPagesReusesThemAndGivesTheSameTokens) {
  SchedulerOptions o;
  o.parallel = 2;
  o.context = 512;
  o.batch_invariant = true;
  o.forward = options_with_chunk(64);
  Scheduler sched(*tiny().model, tiny().tokenizer, o);
  CompletionParams first = request(200, 7, 0.0f, 8);
  CompletionParams second = first;
  second.prompt.resize(150);  // shares two full pages with the first
  for (int32_t t : prompt_of(40, 99)) second.prompt.push_back(t);
  for (const CompletionParams* p : {&first, &second}) {
    const auto h = sched.submit(*p);
    Collected c;
    while (sched.step()) drain_updates(h, c);
    drain_updates(h, c);
    EXPECT_EQ(c.tokens, generate_tokens(*p, o.forward));
    EXPECT_EQ(h->result().cached_tokens, p == &first ? 0 : 128);
  }
  EXPECT_EQ(sched.pool().stats().prefix_hits, 2);
  EXPECT_GT(sched.metrics().cached_prompt_tokens, 0);
}

// With speculation too: a preempted sequence drops its draft and rebuilds its MTP rows from the cached
// pages on return.
TEST(Scheduler, AFullPoolQueuesOrPreemptsAndEveryRequestStillFinishes) {
  for (const bool mtp : {false, true}) {
    SCOPED_TRACE(mtp ? "mtp" : "no mtp");
    SchedulerOptions o;
    o.parallel = 4;
    o.context = 192;  // 3 pages a sequence at most
    o.kv_pages = 4;   // fewer than the four requests need together
    o.max_queue = 5;
    o.mtp = mtp;
    o.mtp_min_acceptance = 0;  // draft at every token
    o.forward = options_with_chunk(64);
    Scheduler sched(*tiny().model, tiny().tokenizer, o);
    std::vector<std::shared_ptr<RequestHandle>> handles;
    for (uint32_t i = 0; i < 4; ++i)
      handles.push_back(sched.submit(request(60 + 10 * i, 20 + i, i % 2 ? 0.7f : 0.0f, 100)));
    std::vector<Collected> got(handles.size());
    for (int step = 0; step < 3000 && sched.step(); ++step)
      for (size_t i = 0; i < handles.size(); ++i) drain_updates(handles[i], got[i]);
    for (size_t i = 0; i < handles.size(); ++i) {
      drain_updates(handles[i], got[i]);
      EXPECT_NE(got[i].finish, FinishReason::none) << i;
      EXPECT_FALSE(got[i].tokens.empty()) << i;
    }
    EXPECT_GT(sched.metrics().preemptions, 0);
    EXPECT_EQ(sched.metrics().drafted_tokens > 0, mtp);
    EXPECT_EQ(sched.pool().stats().referenced, 0);
  }
}

TEST(Scheduler, RefusesBeyondTheQueueAndExplainsBadRequests) {
  SchedulerOptions o;
  o.parallel = 1;
  o.context = 128;
  o.max_queue = 2;
  Scheduler sched(*tiny().model, tiny().tokenizer, o);
  // One request for the free slot, then two that wait; the fourth is refused.
  for (uint32_t i = 1; i <= 3; ++i) EXPECT_NE(sched.submit(request(5, i, 0, 4)), nullptr) << i;
  EXPECT_EQ(sched.submit(request(5, 4, 0, 4)), nullptr);
  EXPECT_EQ(sched.metrics().requests_rejected, 1);
  EXPECT_NE(testing::error_of([&] { sched.submit(request(128, 1, 0, 4)); }).find("the context is 128"),
            std::string::npos);
  CompletionParams bad = request(3, 1, 0, 4);
  bad.prompt[1] = 300;
  EXPECT_NE(testing::error_of([&] { sched.submit(bad); }).find("outside the model's vocabulary"), std::string::npos);
  EXPECT_NE(testing::error_of([&] { sched.submit(CompletionParams{}); }).find("empty"), std::string::npos);
}

TEST(Scheduler, WithNoQueueARequestRunsInAFreeSlotAndTheNextIsRefused) {
  SchedulerOptions o;
  o.parallel = 1;
  o.context = 128;
  o.max_queue = 0;
  Scheduler sched(*tiny().model, tiny().tokenizer, o);
  EXPECT_NE(sched.submit(request(5, 1, 0, 4)), nullptr);
  EXPECT_EQ(sched.submit(request(5, 2, 0, 4)), nullptr);  // the slot is taken, if not yet admitted
  sched.step();
  EXPECT_EQ(sched.metrics().running, 1);
  EXPECT_EQ(sched.submit(request(5, 3, 0, 4)), nullptr);
  while (sched.step()) {
  }
  EXPECT_NE(sched.submit(request(5, 4, 0, 4)), nullptr);  // free again
  EXPECT_EQ(sched.metrics().requests_rejected, 2);
}

TEST(Scheduler, ACancelledRequestReleasesItsPagesAtTheNextStep) {
  SchedulerOptions o;
  o.parallel = 2;
  o.context = 256;
  Scheduler sched(*tiny().model, tiny().tokenizer, o);
  const auto h = sched.submit(request(100, 5, 0.9f, 200));
  sched.step();
  sched.step();
  EXPECT_GT(sched.pool().stats().referenced, 0);
  h->cancel();
  sched.step();
  EXPECT_EQ(sched.pool().stats().referenced, 0);
  EXPECT_EQ(sched.metrics().pages.referenced, 0);  // /metrics says so too, though nothing runs now
  Collected c;
  drain_updates(h, c);
  EXPECT_EQ(c.finish, FinishReason::cancelled);
}

TEST(Scheduler, StopStringsEndTheReplyAcrossTokens) {
  SchedulerOptions o;
  o.context = 256;
  Scheduler sched(*tiny().model, tiny().tokenizer, o);
  CompletionParams p = request(12, 8, 0.0f, 40);
  p.stop_tokens.clear();
  const auto run = [&](const CompletionParams& q) {
    const auto h = sched.submit(q);
    Collected c;
    while (sched.step()) drain_updates(h, c);
    drain_updates(h, c);
    return c;
  };
  const Collected full = run(p);
  ASSERT_GE(full.text.size(), 12u);
  ASSERT_EQ(full.finish, FinishReason::length);
  // A stop string spanning several tokens in the middle of the greedy reply (whole characters).
  size_t start = full.text.size() / 3;
  while (start > 0 && (full.text[start] & 0xC0) == 0x80) --start;
  size_t end = start + 4;
  while (end < full.text.size() && (full.text[end] & 0xC0) == 0x80) ++end;
  p.stop = {full.text.substr(start, end - start)};
  const Collected stopped = run(p);
  EXPECT_EQ(stopped.finish, FinishReason::stop);
  EXPECT_EQ(stopped.text, full.text.substr(0, full.text.find(p.stop[0])));
}

// ---- speculative decoding (MTP) in the scheduler ----

// A tiny MTP model with a vocabulary of `vocab` ids (the byte tokenizer decodes the first ones).
std::unique_ptr<Model> small_vocab_model(const testing::TempDir& dir, int64_t vocab, uint64_t seed, double scale) {
  ModelConfig config = testing::tiny_v3_config();
  config.vocab_size = vocab;
  testing::write_tiny_checkpoint(config, dir.path(), seed, DType::BF16, false, scale);
  return load_model(dir.path());
}

std::vector<int32_t> plain_tokens(const Model& model, const CompletionParams& p, const ForwardOptions& options) {
  KVCache cache(model.config, int64_t(p.prompt.size()) + p.max_tokens);
  Sampler sampler(p.sampling);
  std::vector<int32_t> out;
  const std::optional<int32_t> eos = p.stop_tokens.empty() ? std::nullopt : std::optional<int32_t>(p.stop_tokens[0]);
  generate(model, cache, {p.prompt, p.max_tokens, eos}, sampler, options, [&](int32_t t) {
    out.push_back(t);
    return true;
  });
  return out;
}

// Greedy replies with speculation equal generate()'s without it, for requests joining mid-batch, multi-
// chunk prompts and prompts that start with cached pages (their MTP rows come from the cache too), on a
// vocabulary of 6 (drafts mostly accepted) and of 300 (mostly rejected), drafting at every token over the
// whole vocabulary, and over half of it only while drafts are accepted (probing now and then).
TEST(SchedulerMtp, GreedyRepliesEqualGenerateWithoutSpeculation) {
  testing::TempDir dir("serve_mtp");
  const std::unique_ptr<Model> six = small_vocab_model(dir, 6, 91, 0.3);
  int64_t drafted = 0, accepted = 0;
  for (const Model* model : {six.get(), tiny().model.get()}) {
    const int64_t V = model->config.vocab_size;
    for (const bool always : {true, false}) {
      const int64_t draft_vocab = always ? 0 : V / 2;
      SCOPED_TRACE(::testing::Message() << "vocab " << V << " draft vocab " << draft_vocab);
      SchedulerOptions o;
      o.parallel = 3;
      o.context = 400;
      o.step_tokens = 48;
      o.batch_invariant = true;
      o.mtp = true;
      o.mtp_draft_vocab = draft_vocab;
      o.mtp_min_acceptance = always ? 0.0 : 0.5;
      o.forward = options_with_chunk(64);
      Scheduler sched(*model, tiny().tokenizer, o);
      std::vector<CompletionParams> params = {request(5, 1, 0.0f, 30), request(150, 2, 0.0f, 17),
                                              request(70, 3, 0.0f, 40), request(9, 4, 0.0f, 25)};
      params.push_back(params[1]);  // the same prompt again: its full pages come from the prefix cache
      params.back().max_tokens = 9;
      for (CompletionParams& p : params) {
        for (int32_t& t : p.prompt) t %= int32_t(V);
        if (V < 300) p.stop_tokens.clear();
      }
      std::vector<std::shared_ptr<RequestHandle>> handles;
      const std::vector<Collected> got = run_arrivals(sched, params, {0, 0, 3, 4, 40}, &handles);
      for (size_t i = 0; i < params.size(); ++i) {
        SCOPED_TRACE("request " + std::to_string(i));
        const std::vector<int32_t> expected = plain_tokens(*model, params[i], o.forward);
        EXPECT_EQ(got[i].tokens, expected);
        EXPECT_NE(got[i].finish, FinishReason::none);
        const RequestResult r = handles[i]->result();
        EXPECT_EQ(r.completion_tokens, int64_t(expected.size()));
        EXPECT_LE(r.accepted_tokens, r.drafted_tokens);
      }
      EXPECT_GT(handles.back()->result().cached_tokens, 0);
      EXPECT_EQ(sched.pool().stats().referenced, 0);
      const SchedulerMetrics m = sched.metrics();
      std::printf("[ mtp ] vocab %lld, draft vocab %lld, min acceptance %.1f: %lld of %lld drafts accepted, %lld "
                  "tokens\n", (long long)V, (long long)draft_vocab, o.mtp_min_acceptance, (long long)m.accepted_tokens,
                  (long long)m.drafted_tokens, (long long)m.generated_tokens);
      drafted += m.drafted_tokens;
      accepted += m.accepted_tokens;
    }
  }
  EXPECT_GT(accepted, 5);  // both branches ran
  EXPECT_GT(drafted - accepted, 5);
}

// Sampled replies with speculation, many sequences batched, follow the model's joint distribution of
// the first three tokens (the second comes from verifying a draft, the third from a bonus or a plain
// step), computed from the model's logits directly.
TEST(SchedulerMtp, SampledRepliesKeepTheModelsDistribution) {
  testing::TempDir dir("serve_mtp_sampled");
  const std::unique_ptr<Model> m = small_vocab_model(dir, 5, 77, 0.15);
  const int64_t V = 5;
  const std::vector<int32_t> prompt = {2, 3, 4, 2};
  SamplingParams sampling;
  sampling.temperature = 1.0f;
  const std::vector<double> joint = testing::joint_distribution_of_three(*m, prompt, sampling);
  SchedulerOptions o;
  o.parallel = 16;
  o.context = 16;
  o.max_queue = 100000;
  o.mtp = true;
  Scheduler sched(*m, tiny().tokenizer, o);
  const int draws = 6000;
  std::vector<std::shared_ptr<RequestHandle>> handles;
  for (int i = 0; i < draws; ++i) {
    CompletionParams p;
    p.prompt = prompt;
    p.max_tokens = 3;
    p.sampling = sampling;
    p.sampling.seed = uint64_t(5000 + i);
    p.top_logprobs = 0;
    handles.push_back(sched.submit(p));
    ASSERT_NE(handles.back(), nullptr);
  }
  while (sched.step()) {
  }
  std::vector<double> counts(joint.size(), 0.0);
  for (const auto& h : handles) {
    Collected c;
    drain_updates(h, c);
    ASSERT_EQ(c.tokens.size(), 3u);
    counts[size_t((c.tokens[0] * V + c.tokens[1]) * V + c.tokens[2])] += 1;
  }
  size_t cells = 0;
  const double x2 = testing::merged_chi_square(counts, joint, draws, &cells);
  EXPECT_LT(x2, testing::chi_square_bound(cells));
  const SchedulerMetrics metrics = sched.metrics();
  EXPECT_EQ(metrics.drafted_tokens, draws);  // every reply verified one draft for its second token
  EXPECT_GT(metrics.accepted_tokens, draws / 10);
  EXPECT_LT(metrics.accepted_tokens, draws);
}

TEST(SchedulerMtp, ACheckpointWithoutAnMtpModuleIsRefused) {
  testing::TempDir dir("serve_mtp_v2");
  testing::write_tiny_checkpoint(testing::tiny_v2_config(), dir.path(), 3, DType::BF16, false);
  const std::unique_ptr<Model> m = load_model(dir.path());
  SchedulerOptions o;
  o.mtp = true;
  EXPECT_NE(testing::error_of([&] { Scheduler sched(*m, tiny().tokenizer, o); }).find("MTP module"), std::string::npos);
}

TEST(Scheduler, ARunningThreadServesAndDrains) {
  SchedulerOptions o;
  o.parallel = 2;
  o.context = 128;
  Scheduler sched(*tiny().model, tiny().tokenizer, o);
  sched.start();
  const auto a = sched.submit(request(10, 1, 0.0f, 16)), b = sched.submit(request(20, 2, 0.5f, 16));
  sched.drain_and_stop();
  EXPECT_EQ(sched.submit(request(10, 3, 0.0f, 4)), nullptr);  // draining: no new work
  for (const auto& h : {a, b}) {
    Collected c;
    drain_updates(h, c);
    EXPECT_NE(c.finish, FinishReason::none);
  }
}

}  // namespace
}  // namespace dsv3
