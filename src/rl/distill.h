// Distillation data by rejection sampling (DeepSeek-R1 §2.3.3, §4.1): a teacher samples K replies to
// each of N train problems of a task, and the replies its rule-based reward marks correct become SFT
// conversations for a student (`dsv3 distill` then runs `dsv3 sft` on them). R1 found that small
// models fine-tuned this way on a strong model's reasoning beat the same models trained by RL.
#pragma once

#include <cstdint>
#include <string>

#include "infer/chat_format.h"
#include "rl/tasks.h"

namespace dsv3 {

struct DistillOptions {
  std::string teacher_dir;
  TaskKind task = TaskKind::arithmetic;
  TaskOptions task_options;
  int64_t problems = 256;             // N train problems
  int64_t samples = 4;                // K replies each
  int64_t max_completion_length = 256;
  double temperature = 1.0;
  ChatTemplate chat_template = ChatTemplate::deepseek_r1;
  uint64_t seed = 1;
  int64_t batch_problems = 16;        // problems sampled together (× K sequences)
};

struct DistillStats {
  int64_t sampled = 0, kept = 0;  // replies
  int64_t problems_solved = 0;    // problems with at least one kept reply
};

// Samples, keeps the correct replies, and writes them to `out_path` as {"messages": [user, assistant]}
// lines (the assistant turn with its reasoning, as the R1 template's prompt opened it).
DistillStats write_distillation_data(const DistillOptions& options, const std::string& out_path);

}  // namespace dsv3
