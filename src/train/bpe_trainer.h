// Byte-level BPE training: text -> a Hugging Face tokenizer.json (+ tokenizer_config.json) that
// dsv3's Tokenizer (io/tokenizer.h) and HF-compatible libraries read.
//
// Layout of the trained vocabulary: the added tokens — the special tokens (ids 0..k-1), then the
// chat tokens (ids k..k+c-1) — then all 256 byte symbols in GPT-2's byte-level spelling, ordered by
// code point (so every byte string is encodable), then one token per learned merge, in merge order.
// Added tokens carry the flags DeepSeek's tokenizer.json gives them: special tokens are special and
// not normalized; chat tokens (by default DeepSeek's role, reasoning and tool markers,
// infer/chat_format.h) are normalized and not special. With them every trained model can be run,
// served and fine-tuned in DeepSeek's chat format.
//
// Pre-tokenization is DeepSeek-V3's (digits in groups of up to 3, CJK runs, words with an optional
// leading space or punctuation mark, punctuation runs, newlines), run through the same PreTokenizer
// the Tokenizer uses, so training sees exactly the pieces encoding will see.
//
// Training (the classic algorithm, Sennrich et al. 2016): count the distinct pre-tokens; every
// pre-token is a sequence of byte symbols; repeatedly merge the most frequent adjacent pair,
// updating pair counts only in the words that contain it. A lazy max-heap orders pairs by (count
// descending, left id, right id ascending), so equal inputs give byte-identical files.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace dsv3 {

// DeepSeek's names: <｜begin▁of▁sentence｜> (BOS), <｜end▁of▁sentence｜> (EOS), <｜▁pad▁｜>.
std::vector<std::string> default_special_tokens();

// DeepSeek's chat markers (deepseek_chat_tokens(), infer/chat_format.h): <think>, </think>,
// <｜User｜>, <｜Assistant｜> and the tool-call markers.
std::vector<std::string> default_chat_tokens();

// The "pre_tokenizer" section written into trained tokenizer.json files (DeepSeek-V3's).
nlohmann::json bpe_trainer_pre_tokenizer_json();

struct BpeTrainerOptions {
  int64_t vocab_size = 4096;  // total ids: special and chat tokens + 256 bytes + merges
  int64_t min_frequency = 2;  // pairs seen fewer times (weighted by word count) are never merged
  // Added as special tokens at ids 0, 1, ...; the first is BOS and the second EOS in
  // tokenizer_config.json, a third is the pad token. Their text is never learned from.
  std::vector<std::string> special_tokens = default_special_tokens();
  // Added after them as non-special tokens (DeepSeek's chat markers); their text is never learned
  // from either. tokenizer_config.json gets DeepSeek's chat_template when the added tokens hold every
  // DeepSeek token it writes.
  std::vector<std::string> chat_tokens = default_chat_tokens();
  bool show_progress = false;  // progress lines on stderr (core/progress.h)
};

struct BpeTrainingStats {
  int64_t text_bytes = 0;      // bytes of text counted
  int64_t pre_tokens = 0;      // pre-tokens counted (with repetition)
  int64_t distinct_words = 0;  // distinct pre-tokens
  int64_t merges = 0;          // merges learned
  int64_t vocab_size = 0;      // ids in the trained vocabulary (< options.vocab_size when pairs ran out)
  double count_seconds = 0, merge_seconds = 0;
};

struct TrainedTokenizer {
  std::string tokenizer_json;         // Hugging Face tokenizer.json text
  std::string tokenizer_config_json;  // tokenizer_config.json text (bos/eos/pad tokens, chat_template)
  BpeTrainingStats stats;
};

class BpeTrainer {
 public:
  explicit BpeTrainer(BpeTrainerOptions options = {});
  ~BpeTrainer();
  BpeTrainer(BpeTrainer&&) noexcept;
  BpeTrainer& operator=(BpeTrainer&&) noexcept;

  // Counts the pre-tokens of each text (in parallel over texts; the counts do not depend on the
  // thread count). Occurrences of the special tokens are cut out first. May be called repeatedly.
  void add_texts(const std::vector<std::string>& texts);
  void add_text(std::string_view text);

  // Learns the merges and returns the files' contents. Does not change the counts.
  TrainedTokenizer train() const;

  const BpeTrainerOptions& options() const { return options_; }

 private:
  struct Counts;
  BpeTrainerOptions options_;
  std::vector<std::string> added_tokens_;  // special_tokens, then chat_tokens: ids 0, 1, ...
  std::unique_ptr<Counts> counts_;
};

// Writes tokenizer.json at `tokenizer_json_path` and tokenizer_config.json beside it.
void write_trained_tokenizer(const TrainedTokenizer& trained, const std::string& tokenizer_json_path);

}  // namespace dsv3
