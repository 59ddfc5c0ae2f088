// Verifiable tasks for R1-style post-training (SPEC.md §6): problems whose answers a rule can check, each
// with a worked solution (the target of `dsv3 sft`) and a rule-based reward (the signal of `dsv3 grpo`;
// DeepSeek-R1 used rule-based rewards only: answer accuracy and format).
//
// Tasks and their difficulty settings:
//   arithmetic  a ∘ b with ∘ ∈ {+, −, ×} on `digits`-digit operands (a ≥ b for −); the solution works
//               column by column (carries, borrows) or by partial products.
//   parity      the sum modulo 2 of `bits` bits; the solution is the running parity, bit by bit (small
//               models trained from scratch learn d-bit parity only from such chains: arXiv 2510.11495).
//   countdown   reach a target with each of `numbers` given numbers used exactly once and + − × ÷
//               (TinyZero's task); the solution lists the steps of one way.
//
// The reply format (DeepSeek-R1's): reasoning in <think>…</think>, then the answer in
// <answer>…</answer> and nothing else. R1's generation prompt already opens "<think>\n"
// (infer/chat_format.h), so a reply may start inside its reasoning; a leading "<think>" is accepted too.
//
// Reward (TinyZero's 0 / 0.1 / 1): 1 for a correct answer in the right format, 0.1 for the right format
// with a wrong answer, 0 when the format is broken (no "</think>", no single <answer> after it, text
// after it). Its parts are reported apart: accuracy (1 if correct) and format (1 if well formed).
//
// Splits: a problem belongs to test when a hash of its prompt falls in the lowest tenth, otherwise to
// train, so the two never share a problem whatever the seeds; within a split, problems come from a
// deterministic stream (seed) and may repeat where the task has few distinct problems (parity).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace dsv3 {

enum class TaskKind { arithmetic, parity, countdown };
TaskKind parse_task_kind(std::string_view name);  // "arithmetic", "parity", "countdown"; errors list them
const char* task_kind_name(TaskKind kind);

enum class TaskSplit { train, test };
TaskSplit parse_task_split(std::string_view name);  // "train" or "test"
const char* task_split_name(TaskSplit split);

struct TaskOptions {
  int64_t digits = 2;   // arithmetic: digits of each operand (1 … 9)
  int64_t bits = 8;     // parity: bits (1 … 64)
  int64_t numbers = 3;  // countdown: given numbers (2 … 6), each in [1, 50]
  void validate() const;
};

struct TaskProblem {
  TaskKind kind = TaskKind::arithmetic;
  std::string prompt;          // the user message
  std::string answer;          // the checkable answer: a number, a bit, or countdown's target
  std::vector<int64_t> given;  // countdown: the numbers to use
  std::string solution;        // a worked reply: "<think>\n…\n</think>\n<answer>…</answer>"
};

// `n` problems of `split`, problem i a function of (kind, options, seed, split, i).
std::vector<TaskProblem> make_task_problems(TaskKind kind, const TaskOptions& options, TaskSplit split, int64_t n,
                                            uint64_t seed);

// One line of `dsv3 tasks`: {"task", "prompt", "messages": [user (, assistant: the solution)], "answer",
// "solution", "numbers" (countdown)}. with_solution adds the assistant turn, making the line an SFT
// example for `dsv3 sft`.
nlohmann::json task_problem_json(const TaskProblem& problem, bool with_solution);
// The problem of such a line (what `dsv3 grpo` reads); errors name `where` and the field.
TaskProblem task_problem_from_json(const nlohmann::json& line, const std::string& where);

struct TaskReward {
  double total = 0;     // 1, 0.1 or 0
  double accuracy = 0;  // 1 when the answer is correct (and well formed)
  double format = 0;    // 1 when the reply is well formed
};

// The reward of a reply (the generated text after the prompt) to `problem`.
TaskReward score_task_reply(const TaskProblem& problem, std::string_view reply);

// What stands between the last "</think>" and the end, when the reply is well formed: the text inside
// the single <answer>…</answer> (trimmed). Empty when the format is broken.
std::string extract_answer(std::string_view reply, bool* well_formed = nullptr);

// Countdown: evaluates an expression of integers, + − × ÷ and parentheses exactly (as a fraction).
// Returns false on a syntax error or a division by zero; `numbers` receives the integers it used.
bool evaluate_countdown(std::string_view expression, int64_t* numerator, int64_t* denominator,
                        std::vector<int64_t>* numbers);

}  // namespace dsv3
