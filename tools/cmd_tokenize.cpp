// `dsv3 tokenize`: text on stdin -> JSON array of token ids on stdout.
#include <cstdio>
#include <iostream>
#include <iterator>

#include "commands.h"
#include "core/error.h"
#include "tool_common.h"

namespace dsv3::cli {

Runner add_tokenize(CLI::App& app) {
  struct Args {
    std::string tokenizer, model_dir;
    bool no_special = false, bos = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Read text on stdin, print its token ids as a JSON array");
  auto* tok = cmd->add_option("--tokenizer", a->tokenizer, "A Hugging Face tokenizer.json");
  auto* model = cmd->add_option("--model", a->model_dir, "A model directory holding tokenizer.json");
  tok->excludes(model);
  cmd->add_flag("--no-special", a->no_special, "Treat special-token text as plain text");
  cmd->add_flag("--bos", a->bos, "Prepend the beginning-of-sentence token");
  return [a] {
    DSV3_CHECK(!a->tokenizer.empty() || !a->model_dir.empty(), "[tokenize] give --tokenizer FILE or --model DIR");
    const std::string path = a->tokenizer.empty() ? a->model_dir + "/tokenizer.json" : a->tokenizer;
    std::unique_ptr<Tokenizer> tokenizer = load_tokenizer(path);
    const std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    std::vector<int32_t> ids;
    if (a->bos && tokenizer->bos_id()) ids.push_back(*tokenizer->bos_id());
    for (int32_t id : tokenizer->encode(text, /*allow_special=*/!a->no_special)) ids.push_back(id);
    std::string out = "[";
    for (size_t i = 0; i < ids.size(); ++i) out += (i ? ", " : "") + std::to_string(ids[i]);
    out += "]\n";
    std::fputs(out.c_str(), stdout);
    return 0;
  };
}

}  // namespace dsv3::cli
