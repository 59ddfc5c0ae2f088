// dsv3: run DeepSeek-V3 / V2 checkpoints from their Hugging Face files.
#include <cstdio>
#include <map>

#include "commands.h"
#include "core/error.h"
#include "core/parallel.h"
#include "dist/comm.h"
#include "model/model.h"

int main(int argc, char** argv) {
  CLI::App app{"dsv3: DeepSeek-V3 and V2 models from their Hugging Face files, on CPU"};
  app.require_subcommand(1);
  app.fallthrough();  // --threads may come after the subcommand
  app.set_help_all_flag("--help-all", "Print help for every subcommand");
  int threads = 0;
  app.add_option("--threads", threads, "Worker threads (default: all cores)");
  bool mmap_weights = false;
  app.add_flag("--mmap", mmap_weights,
               "Read model weights through the file mapping (starts sooner) instead of loading them into memory on "
               "2 MB pages (the default where they fit in RAM: faster steps)");

  std::map<CLI::App*, dsv3::cli::Runner> runners;
  auto add = [&](auto adder, CLI::App& parent) {
    const size_t before = parent.get_subcommands({}).size();
    dsv3::cli::Runner run = adder(parent);
    runners[parent.get_subcommands({}).at(before)] = std::move(run);
  };
  add(dsv3::cli::add_init, app);
  add(dsv3::cli::add_generate, app);
  add(dsv3::cli::add_chat, app);
  add(dsv3::cli::add_tokenize, app);
  add(dsv3::cli::add_logits, app);
  add(dsv3::cli::add_info, app);
  add(dsv3::cli::add_train_tokenizer, app);
  add(dsv3::cli::add_data, app);
  add(dsv3::cli::add_grads, app);
  add(dsv3::cli::add_train, app);
  add(dsv3::cli::add_plot, app);
  add(dsv3::cli::add_quantize, app);
  add(dsv3::cli::add_perplexity, app);
  add(dsv3::cli::add_serve, app);
  add(dsv3::cli::add_export, app);
  add(dsv3::cli::add_plan, app);
  add(dsv3::cli::add_schedule, app);
  add(dsv3::cli::add_tasks, app);
  add(dsv3::cli::add_sft, app);
  add(dsv3::cli::add_grpo, app);
  add(dsv3::cli::add_distill, app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  // Under mpirun a failing rank stops the others (they would wait in a collective forever).
  const auto fail = [](const char* what) {
    if (dsv3::launched_by_mpirun()) {
      std::fprintf(stderr, "dsv3: error on rank %d: %s\n", dsv3::Comm::world().rank(), what);
      dsv3::abort_comm(1);
    }
    std::fprintf(stderr, "dsv3: error: %s\n", what);
    return 1;
  };
  int status = 1;
  try {
    dsv3::set_num_threads(threads);
    dsv3::set_load_weights_into_memory(!mmap_weights);
    for (auto& [sub, run] : runners)
      if (sub->parsed()) status = run();
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  dsv3::finalize_comm();
  return status;
}
