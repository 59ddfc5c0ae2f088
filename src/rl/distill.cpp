#include "rl/distill.h"

#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/hash.h"
#include "core/progress.h"
#include "io/tokenizer.h"
#include "model/model.h"
#include "rl/grpo_trainer.h"

namespace dsv3 {

DistillStats write_distillation_data(const DistillOptions& o, const std::string& out_path) {
  o.task_options.validate();
  DSV3_CHECK(o.problems >= 1 && o.samples >= 1 && o.max_completion_length >= 1 && o.batch_problems >= 1,
             "[distill] --problems, --samples, --max-completion-length must be >= 1");
  const Tokenizer tokenizer = Tokenizer::from_file(o.teacher_dir + "/tokenizer.json");
  const std::unique_ptr<Model> teacher = load_model(o.teacher_dir);
  const std::vector<TaskProblem> problems = make_task_problems(o.task, o.task_options, TaskSplit::train, o.problems,
                                                               o.seed);
  std::ofstream out(out_path, std::ios::trunc);
  DSV3_CHECK(out.good(), "[distill] cannot write ", out_path);
  DistillStats stats;
  ProgressBar bar("distill", o.problems, "problems");
  for (int64_t p0 = 0; p0 < o.problems; p0 += o.batch_problems) {
    const int64_t n = std::min(o.batch_problems, o.problems - p0);
    std::vector<std::vector<int32_t>> prompts;
    for (int64_t i = 0; i < n; ++i)
      prompts.push_back(encode_chat(tokenizer, {{"user", problems[size_t(p0 + i)].prompt}}, true, o.chat_template));
    const std::vector<Rollout> replies = sample_completions(*teacher, tokenizer, prompts, o.samples,
                                                            o.max_completion_length, o.temperature,
                                                            splitmix64(o.seed) ^ uint64_t(p0));
    for (int64_t i = 0; i < n; ++i) {
      const TaskProblem& problem = problems[size_t(p0 + i)];
      bool solved = false;
      for (int64_t k = 0; k < o.samples; ++k) {
        const std::string reply = completion_text(tokenizer, replies[size_t(i * o.samples + k)]);
        ++stats.sampled;
        if (score_task_reply(problem, reply).accuracy < 1) continue;
        ++stats.kept;
        solved = true;
        // The R1 prompt opened the reasoning; the example carries it whole (dsv3 sft strips it again).
        const std::string content = o.chat_template == ChatTemplate::deepseek_r1 ? "<think>\n" + reply : reply;
        out << nlohmann::json{{"messages", {{{"role", "user"}, {"content", problem.prompt}},
                                            {{"role", "assistant"}, {"content", content}}}},
                              {"task", task_kind_name(problem.kind)},
                              {"answer", problem.answer}}
                   .dump()
            << "\n";
      }
      if (solved) ++stats.problems_solved;
    }
    bar.update(p0 + n);
    char note[96];
    std::snprintf(note, sizeof(note), "kept %lld of %lld replies", (long long)stats.kept, (long long)stats.sampled);
    bar.set_note(note);
  }
  bar.finish();
  out.flush();
  DSV3_CHECK(out.good(), "[distill] writing ", out_path, " failed");
  return stats;
}

}  // namespace dsv3
