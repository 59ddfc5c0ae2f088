// Decode benchmark: where a batch-1 decode step's time goes, what batching sequences buys, and what MTP
// speculation costs, on the DeepSeek-V3-shaped random model of bench_model (preset v3-1.5g, BF16 and
// FP8 weights), each figure beside the read bandwidth measured in the same run:
//   breakdown  batch 1: time per step by profiler zone (ops that stream weights — the projections,
//              router, experts, dense/shared FFNs, head — against the attention core over the latent
//              cache, and the rest: embedding, norms, residuals, rope), and the weight bytes per step over
//              the step time as a fraction of the read bandwidth; and sampling's time beside it (greedy,
//              and temperature 0.6 with top-p 0.95, over the whole vocabulary);
//   batch      B sequences (16-token prompts each, different tokens) decoded together by forward_batch:
//              step time, aggregate tokens/s and its ratio to batch 1, and the weight bytes one step
//              reads — the routed experts the B tokens chose (each read once however many chose it)
//              plus everything else once;
//   mtp        the costs speculation trades: a 2-position verification forward and a 1-position MTP
//              draft against a 1-position step, the speed-up they imply at an acceptance rate a,
//              (1 + a) / ((verify + draft) / step), and a greedy generate() with and without --mtp.
// Validation first: a batched step of 16 sequences against each sequence run alone (median over
// sequences of max|Δlogit| / max|logit| within 2^-5: bf16 activations, kernels that block differently),
// and greedy generation with MTP equal to plain greedy generation, token for token.
//
//   build/bench/bench_decode [--dir DIR] [--preset v3-1.5g] [--batches 1,2,4,8,16] [--steps 16] [--runs 3]
//                            [--cases breakdown,prefill,batch,mtp] [--weights bf16,fp8] [--threads T]
// One JSON line per case. The batch case also reports where the largest batch's step goes, by profiler
// zone, from one extra profiled pass (not the timed ones).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "bench_common.h"
#include "bench_models.h"
#include "core/parallel.h"
#include "core/profiler.h"
#include "infer/generator.h"
#include "infer/sampler.h"
#include "model/model.h"
#include "model/presets.h"

using namespace dsv3;
using namespace dsv3::bench;

namespace {

constexpr int64_t kPromptTokens = 16;

// B sequences, each prefilled with its own 16-token prompt; `next` holds each one's next token.
struct Batch {
  std::vector<std::unique_ptr<KVCache>> caches;
  std::vector<int32_t> next;
  std::vector<float> logits;  // [B, vocab]
};

Batch start_batch(const Model& model, int64_t sequences, int64_t capacity, const ForwardOptions& o) {
  const int64_t vocab = model.config.vocab_size;
  Batch b;
  b.logits.resize(size_t(sequences * vocab));
  Tensor logits;
  for (int64_t i = 0; i < sequences; ++i) {
    std::vector<int32_t> prompt = prompt_tokens(kPromptTokens + i, vocab);
    prompt.erase(prompt.begin(), prompt.begin() + i);  // a different prompt per sequence
    b.caches.push_back(std::make_unique<KVCache>(model.config, capacity));
    forward(model, *b.caches.back(), prompt.data(), kPromptTokens, o, &logits);
    b.next.push_back(argmax(logits.as<float>(), vocab));
  }
  return b;
}

// One batched decode step; returns its seconds and the routed-expert runs it made.
double batch_step(const Model& model, Batch& b, const ForwardOptions& o, Scratch& scratch, int64_t* experts_run) {
  const int64_t vocab = model.config.vocab_size, B = int64_t(b.caches.size());
  std::vector<BatchItem> items;
  for (int64_t i = 0; i < B; ++i)
    items.push_back(BatchItem{b.caches[size_t(i)].get(), &b.next[size_t(i)], 1, b.logits.data() + i * vocab, nullptr});
  scratch.experts_run = 0;
  const double t0 = now_seconds();
  forward_batch(model, items.data(), B, o, scratch);
  const double seconds = now_seconds() - t0;
  *experts_run = scratch.experts_run;
  for (int64_t i = 0; i < B; ++i) b.next[size_t(i)] = argmax(b.logits.data() + i * vocab, vocab);
  return seconds;
}

// Median over sequences of max|batched - alone| / max|alone| for one batched step of 16 sequences.
double validate_batch(const Model& model, const ForwardOptions& o) {
  const int64_t vocab = model.config.vocab_size, B = 16;
  Batch batched = start_batch(model, B, kPromptTokens + 2, o);
  Batch alone = start_batch(model, B, kPromptTokens + 2, o);
  Scratch scratch;
  int64_t experts = 0;
  batch_step(model, batched, o, scratch, &experts);
  std::vector<double> rel;
  Tensor logits;
  for (int64_t i = 0; i < B; ++i) {
    forward(model, *alone.caches[size_t(i)], &alone.next[size_t(i)], 1, o, &logits);
    double d = 0, ref = 0;
    for (int64_t v = 0; v < vocab; ++v) {
      d = std::max(d, std::fabs(double(batched.logits[size_t(i * vocab + v)]) - double(logits.as<float>()[v])));
      ref = std::max(ref, std::fabs(double(logits.as<float>()[v])));
    }
    rel.push_back(std::isfinite(d) && ref > 0 ? d / ref : INFINITY);
  }
  return median(rel);
}

std::vector<int32_t> greedy_tokens(const Model& model, bool mtp, int64_t n, const ForwardOptions& o,
                                   GenerationStats* stats) {
  KVCache cache(model.config, kPromptTokens + n);
  Sampler sampler(SamplingParams{});
  std::vector<int32_t> out;
  const GenerationRequest request{prompt_tokens(kPromptTokens, model.config.vocab_size), n, std::nullopt, mtp};
  *stats = generate(model, cache, request, sampler, o, [&](int32_t t) {
    out.push_back(t);
    return true;
  });
  return out;
}

// The profiler's zones as JSON members "zone": share of `total` seconds, and the shares of the zones that
// stream weights (projections, router, experts, dense/shared FFNs, head), of the attention core, and of
// the rest (embedding, norms, residuals, rope, expert gathering outside the zones).
struct ZoneShares {
  double weights = 0, attention_core = 0, other = 0;
  std::string json;
};
// With per_call > 0 the JSON gives milliseconds per call (self seconds / per_call) instead of shares.
ZoneShares zone_shares(double total, int64_t per_call = 0) {
  ZoneShares z;
  for (const ProfileEntry& e : profiler_entries()) {
    const bool streams = e.name == "attn.projections" || e.name == "moe.router" || e.name == "moe.experts" ||
                         e.name == "moe.shared" || e.name == "mlp.dense" || e.name == "head";
    (streams ? z.weights : e.name == "attn.core" ? z.attention_core : z.other) += e.self_seconds / total;
    char item[96];
    std::snprintf(item, sizeof(item), "%s\"%s\": %.3f", z.json.empty() ? "" : ", ", e.name.c_str(),
                  per_call > 0 ? e.self_seconds * 1e3 / double(per_call) : e.self_seconds / total);
    z.json += item;
  }
  return z;
}

// `steps` decode steps of B sequences under the profiler (after one warm-up step): their total seconds
// and the zones' shares of it.
ZoneShares profiled_steps(const Model& model, int64_t B, int64_t capacity, int64_t steps,
                          const ForwardOptions& options, double* total) {
  Batch b = start_batch(model, B, capacity, options);
  Scratch scratch;
  int64_t experts = 0;
  batch_step(model, b, options, scratch, &experts);
  set_profiler_enabled(true);
  reset_profiler();
  *total = 0;
  for (int64_t s = 0; s < steps; ++s) *total += batch_step(model, b, options, scratch, &experts);
  const ZoneShares z = zone_shares(*total);
  set_profiler_enabled(false);
  return z;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = std::string(DSV3_BENCH_BINARY_DIR) + "/bench-models";
  std::string preset = "v3-1.5g";
  std::vector<int64_t> batches = {1, 2, 4, 8, 16};
  int64_t steps = 16;
  int runs = 3, threads = 0;
  std::string cases = "breakdown,prefill,batch,mtp", weight_kinds = "bf16,fp8";
  const char* usage =
      "usage: bench_decode [--dir DIR] [--preset NAME] [--batches 1,2,4,8,16] [--steps N] [--runs R]\n"
      "                    [--cases breakdown,prefill,batch,mtp] [--weights bf16,fp8] [--threads T]\n";
  parse_flags(argc, argv, usage, [&](const std::string& flag, const std::string& value) {
    if (flag == "--dir") dir = value;
    else if (flag == "--preset") preset = value;
    else if (flag == "--batches") batches = parse_list(value);
    else if (flag == "--steps") steps = std::stoll(value);
    else if (flag == "--runs") runs = std::stoi(value);
    else if (flag == "--threads") threads = std::stoi(value);
    else if (flag == "--cases") cases = value;
    else if (flag == "--weights") weight_kinds = value;
    else return false;
    return true;
  });
  auto wanted = [](const std::string& list, const std::string& item) {
    std::stringstream in(list);
    std::string each;
    while (std::getline(in, each, ','))
      if (each == item) return true;
    return false;
  };
  try {
    set_num_threads(threads);
    const ModelConfig config = preset_config(preset);
    ForwardOptions options;  // generation defaults: bf16 activations, absorbed attention
    std::vector<bool> kinds;
    if (wanted(weight_kinds, "bf16")) kinds.push_back(false);
    if (wanted(weight_kinds, "fp8")) kinds.push_back(true);
    for (const bool fp8 : kinds) {
      const std::string model_dir = dir + "/" + preset + (fp8 ? "-fp8" : "-bf16");
      ensure_model(model_dir, config, fp8);
      std::unique_ptr<Model> model = load_model(model_dir);
      const double batch_diff = validate_batch(*model, options);
      GenerationStats plain_stats, mtp_stats;
      const bool has_mtp = !model->weights.mtp.empty();
      const bool same = !has_mtp || greedy_tokens(*model, false, 24, options, &plain_stats) ==
                                        greedy_tokens(*model, true, 24, options, &mtp_stats);
      const bool ok = batch_diff <= 0x1p-5 && same;
      std::printf("{\"case\": \"validate\", \"weights\": \"%s\", \"batch16_median_rel_diff_from_alone\": %.3g, "
                  "\"bound\": %.3g, \"mtp_greedy_identical\": %s, \"ok\": %s}\n",
                  fp8 ? "fp8" : "bf16", batch_diff, 0x1p-5, same ? "true" : "false", ok ? "true" : "false");
      std::fflush(stdout);
      DSV3_CHECK(ok, "[bench_decode] validation failed: nothing is timed");
    }

    ReadBandwidthProbe probe(size_t(512) << 20);
    const BandwidthResult bw = measure_read_bandwidth(probe, 5);
    std::printf("{\"case\": \"machine\", \"threads\": %d, \"read_bandwidth_gbs\": %.2f, \"read_streams\": %d}\n",
                num_threads(), bw.best_gbs, bw.streams);
    std::fflush(stdout);

    for (const bool fp8 : kinds) {
      const char* weights = fp8 ? "fp8" : "bf16";
      std::unique_ptr<Model> model = load_model(dir + "/" + preset + (fp8 ? "-fp8" : "-bf16"));
      const ModelConfig& c = model->config;
      const PerToken costs = per_token_costs(*model);
      const size_t routed_bytes_b1 = size_t(c.num_experts_per_tok) * size_t(costs.moe_layers) * costs.expert_bytes;
      const size_t fixed_bytes = costs.decode_weight_bytes - routed_bytes_b1;
      const int64_t capacity = kPromptTokens + steps * (runs + 1) + 4;

      // Batch 1 under the profiler: where a step's time goes.
      if (wanted(cases, "breakdown")) {
        double read_peak = std::max(probe.pass(), probe.pass());
        double total = 0;
        const ZoneShares z = profiled_steps(*model, 1, capacity, steps, options, &total);
        read_peak = std::max({read_peak, probe.pass(), probe.pass()});
        const double step = total / double(steps);
        // Sampling, outside the forward: a greedy pick and a temperature 0.6 / top-p 0.95 draw over one
        // step's logits (the whole vocabulary), median of `steps` calls each.
        double greedy_ms = 0, top_p_ms = 0;
        int64_t top_p_kept = 0;
        {
          Batch b = start_batch(*model, 1, kPromptTokens + 2, options);
          Scratch scratch;
          int64_t experts = 0;
          batch_step(*model, b, options, scratch, &experts);
          for (const bool greedy : {true, false}) {
            SamplingParams params;
            params.temperature = greedy ? 0.0f : 0.6f;
            params.top_p = greedy ? 1.0f : 0.95f;
            params.seed = 7;
            Sampler sampler(params);
            std::vector<double> calls;
            for (int64_t s = 0; s < steps; ++s) {
              const double t0 = now_seconds();
              sampler.sample(b.logits.data(), c.vocab_size);
              calls.push_back(now_seconds() - t0);
            }
            (greedy ? greedy_ms : top_p_ms) = median(calls) * 1e3;
            if (!greedy) {  // how many ids top-p kept: near the whole vocabulary for a random model's flat logits
              std::vector<double> probs;
              sampler.distribution(b.logits.data(), c.vocab_size, probs);
              top_p_kept = int64_t(std::count_if(probs.begin(), probs.end(), [](double p) { return p > 0; }));
            }
          }
        }
        const double gbs = double(costs.decode_weight_bytes) / step / 1e9;
        std::printf("{\"case\": \"breakdown\", \"weights\": \"%s\", \"step_ms\": %.2f, \"tokens_per_s\": %.2f, "
                    "\"weight_bytes_per_step\": %zu, \"weight_gbs\": %.2f, \"read_peak_gbs\": %.2f, "
                    "\"fraction_of_read_peak\": %.3f, \"share_weight_streaming\": %.3f, \"share_attention_core\": "
                    "%.3f, \"share_other\": %.3f, \"weight_streaming_gbs\": %.2f, \"sampling_greedy_ms\": %.3f, "
                    "\"sampling_top_p_ms\": %.3f, \"sampling_top_p_kept\": %lld, \"zones\": {%s}}\n",
                    weights, step * 1e3, 1.0 / step, costs.decode_weight_bytes, gbs, read_peak, gbs / read_peak,
                    z.weights, z.attention_core, z.other,
                    double(costs.decode_weight_bytes) / (z.weights * step) / 1e9, greedy_ms, top_p_ms, (long long)top_p_kept,
                    z.json.c_str());
        std::fflush(stdout);
      }

      // A 512-token prefill under the profiler: where prefill time goes.
      if (wanted(cases, "prefill")) {
        const int64_t n = 512;
        const std::vector<int32_t> prompt = prompt_tokens(n, c.vocab_size);
        Tensor logits;
        {
          KVCache warm(c, n);
          forward(*model, warm, prompt.data(), n, options, &logits);
        }
        KVCache cache(c, n);
        prepare_forward(*model, cache, n, options);  // as generate: scratch grown before timing
        set_profiler_enabled(true);
        reset_profiler();
        const double t0 = now_seconds();
        forward(*model, cache, prompt.data(), n, options, &logits);
        const double total = now_seconds() - t0;
        const ZoneShares z = zone_shares(total);
        set_profiler_enabled(false);
        std::printf("{\"case\": \"prefill_breakdown\", \"weights\": \"%s\", \"prompt_tokens\": %lld, "
                    "\"tokens_per_s\": %.1f, \"share_projections_and_ffn\": %.3f, \"share_attention_core\": %.3f, "
                    "\"share_other\": %.3f, \"zones\": {%s}}\n",
                    weights, (long long)n, double(n) / total, z.weights, z.attention_core, z.other, z.json.c_str());
        std::fflush(stdout);
      }

      // Batched decode.
      double single_tps = 0;
      for (const int64_t B : wanted(cases, "batch") ? batches : std::vector<int64_t>{}) {
        std::vector<double> step_s;
        double experts_sum = 0, read_peak = 0;
        for (int r = 0; r < runs; ++r) {
          read_peak = std::max({read_peak, probe.pass(), probe.pass()});
          Batch b = start_batch(*model, B, capacity, options);
          Scratch scratch;
          int64_t experts = 0;
          batch_step(*model, b, options, scratch, &experts);  // warm-up
          for (int64_t s = 0; s < steps; ++s) {
            step_s.push_back(batch_step(*model, b, options, scratch, &experts));
            experts_sum += double(experts);
          }
        }
        std::string zones;
        if (B == batches.back()) {
          double total = 0;
          zones = ", \"zones\": {" + profiled_steps(*model, B, capacity, steps, options, &total).json + "}";
        }
        const double step = median(step_s);
        const double experts_per_step = experts_sum / double(step_s.size());
        const double bytes = double(fixed_bytes) + experts_per_step * double(costs.expert_bytes);
        const double tps = double(B) / step;
        if (B == 1) single_tps = tps;
        std::printf("{\"case\": \"batch\", \"weights\": \"%s\", \"sequences\": %lld, \"step_ms\": %.2f, "
                    "\"tokens_per_s\": %.2f, \"vs_batch1\": %.2f, \"experts_run_per_step\": %.1f, "
                    "\"experts_per_layer\": %.1f, \"weight_bytes_per_step\": %.0f, \"weight_gbs\": %.2f, "
                    "\"read_peak_gbs\": %.2f%s}\n",
                    weights, (long long)B, step * 1e3, tps, single_tps > 0 ? tps / single_tps : 0.0,
                    experts_per_step, experts_per_step / double(std::max<int64_t>(costs.moe_layers, 1)), bytes,
                    bytes / step / 1e9, read_peak, zones.c_str());
        std::fflush(stdout);
      }

      // MTP: the cost of a verification (2 positions) and of a draft against one decode step.
      if (wanted(cases, "mtp") && !model->weights.mtp.empty()) {
        std::vector<double> one_s, two_s, draft_s, narrow_draft_s;
        const int64_t V = c.vocab_size, H = c.hidden_size;
        for (int r = 0; r < runs; ++r) {
          KVCache cache(c, kPromptTokens + 3 * steps + 8);
          const std::vector<int32_t> prompt = prompt_tokens(kPromptTokens, V);
          Tensor logits, hidden, draft_logits;
          forward(*model, cache, prompt.data(), kPromptTokens, options, &logits, &hidden);
          mtp_forward(*model, 0, cache, hidden.as<float>(), prompt.data() + 1, kPromptTokens - 1, options, nullptr);
          int32_t token = argmax(logits.as<float>(), V);
          std::vector<float> h(hidden.as<float>() + (kPromptTokens - 1) * H, hidden.as<float>() + kPromptTokens * H);
          ForwardOptions every = options;
          every.all_logits = true;
          for (int64_t s = 0; s < steps; ++s) {
            double t0 = now_seconds();
            mtp_forward(*model, 0, cache, h.data(), &token, 1, options, &draft_logits);
            draft_s.push_back(now_seconds() - t0);
            ForwardOptions narrow = options;  // a draft over the first quarter of the ids
            narrow.head_rows = V / 4;
            t0 = now_seconds();
            mtp_forward(*model, 0, cache, h.data(), &token, 1, narrow, &logits);
            narrow_draft_s.push_back(now_seconds() - t0);
            const int32_t pair[2] = {token, argmax(draft_logits.as<float>(), V)};
            t0 = now_seconds();
            forward(*model, cache, pair, 2, every, &logits, &hidden);
            two_s.push_back(now_seconds() - t0);
            cache.truncate(cache.size() - 1);
            t0 = now_seconds();
            forward(*model, cache, &pair[1], 1, options, &logits, &hidden);
            one_s.push_back(now_seconds() - t0);
            token = argmax(logits.as<float>(), V);
            std::copy_n(hidden.as<float>(), H, h.data());  // the next draft's input (timing only: the MTP
          }                                                // rows need not follow the main positions here)
        }
        // Where the verification's extra time goes: zones of `steps` 2-position forwards and of `steps`
        // 1-position ones (ms per forward), from a profiled pass after the timed ones.
        std::string zones_two, zones_one;
        {
          KVCache cache(c, kPromptTokens + 2 * steps + 8);
          const std::vector<int32_t> prompt = prompt_tokens(kPromptTokens, V);
          Tensor logits, hidden;
          forward(*model, cache, prompt.data(), kPromptTokens, options, &logits, &hidden);
          ForwardOptions every = options;
          every.all_logits = true;
          for (const int64_t width : {int64_t(2), int64_t(1)}) {
            set_profiler_enabled(true);
            reset_profiler();
            double total = 0;
            for (int64_t s = 0; s < steps; ++s) {
              const int32_t pair[2] = {int32_t((s * 7 + 3) % V), int32_t((s * 13 + 5) % V)};
              const double t0 = now_seconds();
              forward(*model, cache, pair, width, width == 2 ? every : options, &logits, &hidden);
              total += now_seconds() - t0;
              cache.truncate(cache.size() - width + 1);
            }
            (width == 2 ? zones_two : zones_one) = zone_shares(total, steps).json;
            set_profiler_enabled(false);
          }
        }
        const double one = median(one_s), two = median(two_s), draft = median(draft_s);
        const double narrow_draft = median(narrow_draft_s);
        const double cost = (two + draft) / one, narrow_cost = (two + narrow_draft) / one;
        GenerationStats plain, spec;
        greedy_tokens(*model, false, 64, options, &plain);
        greedy_tokens(*model, true, 64, options, &spec);
        std::printf("{\"case\": \"mtp\", \"weights\": \"%s\", \"step_ms\": %.2f, \"verify2_ms\": %.2f, "
                    "\"draft_ms\": %.2f, \"draft_quarter_vocab_ms\": %.2f, \"verify_over_step\": %.3f, "
                    "\"speculative_step_over_step\": %.3f, \"implied_speedup_at_acceptance_0.85\": %.3f, "
                    "\"break_even_acceptance\": %.3f, \"quarter_vocab_speculative_step_over_step\": %.3f, "
                    "\"quarter_vocab_implied_speedup_at_0.85\": %.3f, "
                    "\"generate_tokens_per_s\": %.2f, \"generate_mtp_tokens_per_s\": %.2f, "
                    "\"random_model_acceptance\": %.3f, \"verify2_zones_ms\": {%s}, \"step_zones_ms\": {%s}}\n",
                    weights, one * 1e3, two * 1e3, draft * 1e3, narrow_draft * 1e3, two / one, cost, 1.85 / cost,
                    cost - 1.0, narrow_cost, 1.85 / narrow_cost,
                    plain.decode_tokens_per_second(), spec.decode_tokens_per_second(), spec.acceptance_rate(),
                    zones_two.c_str(), zones_one.c_str());
        std::fflush(stdout);
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_decode: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
