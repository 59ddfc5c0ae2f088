#include "train/training_data.h"

#include <filesystem>

#include "core/error.h"

namespace dsv3 {

namespace {

class TokenShardData final : public TrainingData {
 public:
  explicit TokenShardData(TokenShards shards) : shards_(std::move(shards)) {}
  std::string format() const override { return "token-shards"; }
  std::string path() const override { return shards_.dir(); }
  int64_t vocab_size() const override { return shards_.vocab_size(); }
  void check_fits(int64_t seq) const override {
    const int64_t n = shards_.num_tokens(TokenSplit::train);
    DSV3_CHECK(n > seq + 1, "[train] the train split of ", shards_.dir(), " has ", n,
               " tokens, fewer than one sequence of ", seq + 1);
  }
  void train_batch(int64_t index, int64_t batch, int64_t seq, uint64_t seed, TrainBatch& out) const override {
    out.tokens.resize(size_t(batch * (seq + 1)));
    out.document_start.clear();
    out.loss_mask.clear();
    shards_.batch_into(TokenSplit::train, index, batch, seq, seed, out.tokens);
  }
  int64_t val_sequences(int64_t seq) const override { return shards_.num_sequential_windows(TokenSplit::val, seq); }
  void val_batch(int64_t first, int64_t batch, int64_t seq, TrainBatch& out) const override {
    out.tokens = shards_.sequential_batch(TokenSplit::val, first, batch, seq);
    out.document_start.clear();
    out.loss_mask.clear();
  }
  // The shards' own tokenizer, while its file still holds what the shards were made with.
  std::string tokenizer_path() const override {
    const TokenShardsManifest& m = shards_.manifest();
    if (m.tokenizer_path.empty() || !std::filesystem::is_regular_file(m.tokenizer_path)) return "";
    if (!m.tokenizer_hash.empty() && file_fingerprint(m.tokenizer_path) != m.tokenizer_hash) return "";
    return m.tokenizer_path;
  }

 private:
  TokenShards shards_;
};

}  // namespace

std::unique_ptr<TrainingData> open_token_shards(const std::string& dir) {
  return std::make_unique<TokenShardData>(TokenShards::open(dir));
}

std::unique_ptr<TrainingData> open_pretraining_data(const std::string& format, const std::string& path) {
  DSV3_CHECK(format == "token-shards", "[train] ", path, " holds ", format, " data, which dsv3 train does not read",
             format.rfind("chat-jsonl", 0) == 0 ? ": continue the run with dsv3 sft --resume" : "");
  return open_token_shards(path);
}

}  // namespace dsv3
