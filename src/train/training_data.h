// Where the trainer's batches come from: token shards for pretraining (dsv3 train; train/token_shards.h),
// or packed chat conversations for fine-tuning (dsv3 sft; rl/sft_data.h). A batch is a pure function of
// its index and the seed, so runs resume and parallelise bit-identically whatever the source.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "train/token_shards.h"

namespace dsv3 {

struct TrainBatch {
  std::vector<int32_t> tokens;          // [batch, seq + 1]
  std::vector<int32_t> document_start;  // empty, or [batch, seq + 1]: packed documents (train_step.h)
  std::vector<uint8_t> loss_mask;       // empty, or [batch, seq + 1]
};

class TrainingData {
 public:
  virtual ~TrainingData() = default;
  // "token-shards" or "chat-jsonl": recorded in checkpoints, so a run resumes on the same kind of data.
  virtual std::string format() const = 0;
  virtual std::string path() const = 0;  // the directory or file it was opened from
  virtual int64_t vocab_size() const = 0;  // ids used (every id < this)
  // Fails with a message naming the data when it cannot fill one sequence of seq tokens.
  virtual void check_fits(int64_t seq) const = 0;
  // Batch `index` of the train split.
  virtual void train_batch(int64_t index, int64_t batch, int64_t seq, uint64_t seed, TrainBatch& out) const = 0;
  // The validation split as consecutive sequences: how many there are, and `batch` of them from `first`.
  virtual int64_t val_sequences(int64_t seq) const = 0;
  virtual void val_batch(int64_t first, int64_t batch, int64_t seq, TrainBatch& out) const = 0;
  // The tokenizer.json a checkpoint should carry ("" when unknown).
  virtual std::string tokenizer_path() const = 0;
};

// Pretraining data: token shards from `dsv3 data`.
std::unique_ptr<TrainingData> open_token_shards(const std::string& dir);

// Opens the data a checkpoint recorded (format and path) or a run names; the trainer's default knows
// token shards only, dsv3 sft passes one that knows chat conversations too.
using TrainingDataOpener = std::function<std::unique_ptr<TrainingData>(const std::string& format, const std::string& path)>;
std::unique_ptr<TrainingData> open_pretraining_data(const std::string& format, const std::string& path);

}  // namespace dsv3
