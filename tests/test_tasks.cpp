// The verifiable task suite (rl/tasks.h): problems, worked solutions that earn the full reward, the
// reward's cases, the countdown evaluator, and splits that never share a problem.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "rl/tasks.h"
#include "test_support.h"

namespace dsv3 {
namespace {

TEST(Tasks, WorkedSolutionsEarnTheFullReward) {
  for (TaskKind kind : {TaskKind::arithmetic, TaskKind::parity, TaskKind::countdown}) {
    for (int64_t level : {1, 2, 3, 4}) {
      TaskOptions o;
      o.digits = level;
      o.bits = 2 * level;
      o.numbers = level + 1;
      for (TaskSplit split : {TaskSplit::train, TaskSplit::test}) {
        const std::vector<TaskProblem> problems = make_task_problems(kind, o, split, 40, 7);
        ASSERT_EQ(problems.size(), 40u);
        for (const TaskProblem& p : problems) {
          const TaskReward r = score_task_reply(p, p.solution);
          EXPECT_EQ(r.total, 1.0) << task_kind_name(kind) << ": " << p.prompt << "\n" << p.solution;
          EXPECT_EQ(r.accuracy, 1.0);
          EXPECT_EQ(r.format, 1.0);
        }
      }
    }
  }
}

TEST(Tasks, ArithmeticAnswersAreTheValues) {
  TaskOptions o;
  o.digits = 3;
  for (const TaskProblem& p : make_task_problems(TaskKind::arithmetic, o, TaskSplit::train, 60, 3)) {
    long long a = 0, b = 0;
    char op[4] = {};
    ASSERT_EQ(std::sscanf(p.prompt.c_str(), "Compute %lld %3s %lld.", &a, op, &b), 3) << p.prompt;
    const std::string sign = op;
    const long long value = sign == "+" ? a + b : sign == "-" ? a - b : a * b;
    EXPECT_EQ(p.answer, std::to_string(value)) << p.prompt;
    EXPECT_GE(value, 0);
  }
}

TEST(Tasks, RewardCases) {
  TaskProblem p;
  p.kind = TaskKind::arithmetic;
  p.answer = "42";
  const auto total = [&](const std::string& reply) { return score_task_reply(p, reply).total; };
  EXPECT_EQ(total("6 × 7 = 42\n</think>\n<answer>42</answer>"), 1.0);            // after R1's "<think>\n"
  EXPECT_EQ(total("<think>\n6 × 7\n</think>\n\n<answer> 42 </answer>\n"), 1.0);  // opened by the reply
  EXPECT_EQ(total("</think><answer>41</answer>"), 0.1);                          // well formed, wrong
  EXPECT_EQ(total("<answer>42</answer>"), 0.0);                                  // no reasoning close
  EXPECT_EQ(total("</think>\n42"), 0.0);                                         // no answer tags
  EXPECT_EQ(total("</think><answer>42</answer> and more"), 0.0);                 // text after it
  EXPECT_EQ(total("</think><answer>42</answer><answer>42</answer>"), 0.0);       // two answers
  EXPECT_EQ(total("<think><think>x</think><answer>42</answer>"), 0.0);           // reasoning opened twice
  EXPECT_EQ(total(""), 0.0);
  const TaskReward wrong = score_task_reply(p, "</think><answer>7</answer>");
  EXPECT_EQ(wrong.accuracy, 0.0);
  EXPECT_EQ(wrong.format, 1.0);
}

TEST(Tasks, CountdownChecksTheNumbersAndTheValue) {
  TaskProblem p;
  p.kind = TaskKind::countdown;
  p.given = {3, 5, 7};
  p.answer = "22";
  const auto total = [&](const std::string& answer) {
    return score_task_reply(p, "</think><answer>" + answer + "</answer>").total;
  };
  EXPECT_EQ(total("3 * 5 + 7"), 1.0);
  EXPECT_EQ(total("(7 + 3) * 5 - 28"), 0.1);  // a number that was not given
  EXPECT_EQ(total("3 * 5 + 7 + 0"), 0.1);
  EXPECT_EQ(total("7 * 3 + 5"), 0.1);         // 26
  EXPECT_EQ(total("3 × 5 + 7"), 1.0);         // × as typed
  EXPECT_EQ(total("5 * 3 + 7)"), 0.1);        // syntax error
  EXPECT_EQ(total("7 / (5 - 5) + 3"), 0.1);   // division by zero (and 5 twice)
  int64_t num = 0, den = 0;
  std::vector<int64_t> used;
  ASSERT_TRUE(evaluate_countdown("(1 + 2) / 4 - 1", &num, &den, &used));
  EXPECT_EQ(num, -1);
  EXPECT_EQ(den, 4);
  EXPECT_EQ(used, (std::vector<int64_t>{1, 2, 4, 1}));
  EXPECT_FALSE(evaluate_countdown("999999999999 * 999999999999 * 999999999999", &num, &den, &used));  // overflow
  EXPECT_FALSE(evaluate_countdown(std::string(200, '(') + "1" + std::string(200, ')'), &num, &den, &used));
}

TEST(Tasks, SplitsNeverShareAProblemAndStreamsAreReproducible) {
  TaskOptions o;
  o.digits = 2;
  std::set<std::string> train, test;
  for (const TaskProblem& p : make_task_problems(TaskKind::arithmetic, o, TaskSplit::train, 2000, 1)) train.insert(p.prompt);
  for (const TaskProblem& p : make_task_problems(TaskKind::arithmetic, o, TaskSplit::test, 300, 2)) test.insert(p.prompt);
  for (const std::string& t : test) EXPECT_EQ(train.count(t), 0u) << t;
  const auto a = make_task_problems(TaskKind::countdown, o, TaskSplit::train, 20, 5);
  const auto b = make_task_problems(TaskKind::countdown, o, TaskSplit::train, 20, 5);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].solution, b[i].solution);
}

TEST(Tasks, JsonLinesRoundTrip) {
  TaskOptions o;
  for (TaskKind kind : {TaskKind::arithmetic, TaskKind::parity, TaskKind::countdown})
    for (const TaskProblem& p : make_task_problems(kind, o, TaskSplit::test, 5, 9)) {
      const TaskProblem back = task_problem_from_json(task_problem_json(p, true), "line");
      EXPECT_EQ(back.kind, p.kind);
      EXPECT_EQ(back.prompt, p.prompt);
      EXPECT_EQ(back.answer, p.answer);
      EXPECT_EQ(back.given, p.given);
      EXPECT_EQ(back.solution, p.solution);
    }
  EXPECT_NE(testing::error_of([] { task_problem_from_json(nlohmann::json{{"task", "parity"}}, "f.jsonl:3"); })
                .find("f.jsonl:3: field \"prompt\" is missing"),
            std::string::npos);
}

TEST(Tasks, BadSettingsNameTheFlag) {
  TaskOptions o;
  o.digits = 12;
  EXPECT_NE(testing::error_of([&] { make_task_problems(TaskKind::arithmetic, o, TaskSplit::train, 1, 1); })
                .find("--digits must be in [1, 9]"),
            std::string::npos);
  o = TaskOptions{};
  o.bits = 1;  // 2 distinct problems, neither in the test tenth
  EXPECT_NE(testing::error_of([&] { make_task_problems(TaskKind::parity, o, TaskSplit::test, 5, 1); })
                .find("too few distinct problems): raise --bits"),
            std::string::npos);
  EXPECT_NE(testing::error_of([] { parse_task_kind("sudoku"); }).find("arithmetic, parity or countdown"),
            std::string::npos);
}

}  // namespace
}  // namespace dsv3
