// Rollout throughput of dsv3 grpo's sampler (rl/grpo_trainer.h): P prompts × G completions decoded as
// one batch (forward_batch, every weight read once per step for all sequences) against the same
// completions sampled one sequence at a time. Reports sampled tokens per second of each and the ratio.
//
//   build/bench/bench_rollout --model DIR [--prompts 4] [--generations 8] [--tokens 64] [--task arithmetic]
#include <cstdio>
#include <string>

#include "bench_common.h"
#include "infer/chat_format.h"
#include "io/tokenizer.h"
#include "model/model.h"
#include "rl/grpo_trainer.h"
#include "rl/tasks.h"

using namespace dsv3;

int main(int argc, char** argv) {
  std::string model_dir, task = "arithmetic";
  int64_t prompts = 4, generations = 8, tokens = 64;
  bench::parse_flags(argc, argv,
                     "usage: bench_rollout --model DIR [--prompts P] [--generations G] [--tokens N] [--task NAME]\n",
                     [&](const std::string& flag, const std::string& value) {
                       if (flag == "--model") model_dir = value;
                       else if (flag == "--prompts") prompts = std::stoll(value);
                       else if (flag == "--generations") generations = std::stoll(value);
                       else if (flag == "--tokens") tokens = std::stoll(value);
                       else if (flag == "--task") task = value;
                       else return false;
                       return true;
                     });
  try {
    DSV3_CHECK(!model_dir.empty(), "[bench_rollout] --model DIR is required (a checkpoint with tokenizer.json)");
    const auto model = load_model(model_dir);
    const Tokenizer tokenizer = Tokenizer::from_file(model_dir + "/tokenizer.json");
    std::vector<std::vector<int32_t>> ids;
    for (const TaskProblem& p : make_task_problems(parse_task_kind(task), TaskOptions{}, TaskSplit::train, prompts, 1))
      ids.push_back(encode_chat(tokenizer, {{"user", p.prompt}}, true, ChatTemplate::deepseek_r1));
    // Each side is measured by the tokens it sampled (completions stop at EOS or the limit).
    const auto count = [](const std::vector<Rollout>& rs) {
      int64_t n = 0;
      for (const Rollout& r : rs) n += int64_t(r.completion.size());
      return n;
    };
    sample_completions(*model, tokenizer, {ids[0]}, 2, 8, 1.0, 7);  // warm-up
    double t0 = bench::now_seconds();
    const int64_t batched = count(sample_completions(*model, tokenizer, ids, generations, tokens, 1.0, 7));
    const double batched_s = bench::now_seconds() - t0;
    t0 = bench::now_seconds();
    int64_t single = 0;
    for (int64_t p = 0; p < prompts; ++p)
      for (int64_t g = 0; g < generations; ++g)
        single += count(sample_completions(*model, tokenizer, {ids[size_t(p)]}, 1, tokens, 1.0, 7 + uint64_t(g)));
    const double single_s = bench::now_seconds() - t0;
    std::printf("model %s, %lld prompts x %lld completions, at most %lld tokens each, %d threads\n",
                model_dir.c_str(), (long long)prompts, (long long)generations, (long long)tokens, num_threads());
    std::printf("batched (one forward_batch per step):  %lld tokens in %.2f s = %.0f tokens/s\n", (long long)batched,
                batched_s, double(batched) / batched_s);
    std::printf("one sequence at a time:                %lld tokens in %.2f s = %.0f tokens/s\n", (long long)single,
                single_s, double(single) / single_s);
    std::printf("batched / single: %.2fx\n", (double(batched) / batched_s) / (double(single) / single_s));
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_rollout: %s\n", e.what());
    return 1;
  }
  return 0;
}
