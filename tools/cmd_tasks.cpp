// `dsv3 tasks`: verifiable problems for post-training (src/rl/tasks.h), one JSON object per line.
#include <cstdio>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/error.h"
#include "rl/tasks.h"

namespace dsv3::cli {

Runner add_tasks(CLI::App& app) {
  struct Args {
    std::string task, split = "train", out;
    int64_t n = 1000;
    uint64_t seed = 1;
    TaskOptions options;
    bool solutions = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "tasks", "Write verifiable problems (arithmetic, parity, countdown) as JSON lines: the prompt as a user message, "
               "the checkable answer and a worked solution; train and test splits never share a problem");
  cmd->add_option("--task", a->task, "arithmetic, parity or countdown")->required()
      ->check(CLI::IsMember({"arithmetic", "parity", "countdown"}));
  cmd->add_option("--split", a->split, "train or test")->capture_default_str()->check(CLI::IsMember({"train", "test"}));
  cmd->add_option("--n", a->n, "Problems to write")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", a->seed, "Seed of the problem stream")->capture_default_str();
  cmd->add_option("--digits", a->options.digits, "arithmetic: digits of each operand (difficulty)")->capture_default_str();
  cmd->add_option("--bits", a->options.bits, "parity: bits per problem (difficulty)")->capture_default_str();
  cmd->add_option("--numbers", a->options.numbers, "countdown: numbers to combine (difficulty)")->capture_default_str();
  cmd->add_flag("--with-solutions", a->solutions,
                "Add the worked solution as the assistant message (an SFT example for dsv3 sft)");
  cmd->add_option("--out", a->out, "Output file (default: standard output)");
  return [a] {
    const std::vector<TaskProblem> problems = make_task_problems(parse_task_kind(a->task), a->options,
                                                                 parse_task_split(a->split), a->n, a->seed);
    std::ofstream file;
    if (!a->out.empty()) {
      file.open(a->out);
      DSV3_CHECK(file.good(), "[tasks] cannot write ", a->out);
    }
    std::ostream& out = a->out.empty() ? std::cout : file;
    for (const TaskProblem& p : problems) out << task_problem_json(p, a->solutions).dump() << '\n';
    out.flush();
    DSV3_CHECK(out.good(), "[tasks] writing ", a->out.empty() ? "standard output" : a->out, " failed");
    if (!a->out.empty())
      std::fprintf(stderr, "[tasks] wrote %zu %s problems of %s to %s\n", problems.size(), a->split.c_str(),
                   a->task.c_str(), a->out.c_str());
    return 0;
  };
}

}  // namespace dsv3::cli
