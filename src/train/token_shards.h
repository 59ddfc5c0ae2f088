// Token shards: a tokenized corpus on disk, split by document into train and val, read by training
// through mmap.
//
// A shard directory holds
//   train.bin, val.bin  the splits' token ids, little-endian uint16 when the vocabulary has at most
//                       65536 ids, else uint32; each document is written as BOS, its tokens, EOS
//                       (BOS left out when the tokenizer has none), documents in corpus order
//   manifest.json       format, dtype, vocab size, BOS/EOS ids, per split its file, token count and
//                       document count, the tokenizer's path and FNV-1a hash, the split seed
// write_token_shards() writes them (the bins first, the manifest last, each via a temporary file
// and rename, so a directory with a manifest is complete); TokenShards opens and validates them.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace dsv3 {

class Tokenizer;

enum class TokenSplit { train, val };
const char* token_split_name(TokenSplit split);  // "train" / "val"

enum class TokenDtype { u16, u32 };
const char* token_dtype_name(TokenDtype dtype);  // "uint16" / "uint32"
size_t token_dtype_size(TokenDtype dtype);

struct TokenSplitInfo {
  std::string file;  // relative to the shard directory
  int64_t tokens = 0;
  int64_t documents = 0;
};

struct TokenShardsManifest {
  static constexpr const char* kFormat = "dsv3-token-shards";
  static constexpr int kVersion = 1;

  TokenDtype dtype = TokenDtype::u16;
  int64_t vocab_size = 0;
  std::optional<int32_t> bos_id, eos_id;
  std::string document_layout = "BOS text EOS";
  std::string tokenizer_path;  // as given to `dsv3 data`
  std::string tokenizer_hash;  // "fnv1a64:<16 hex digits>" of tokenizer.json's bytes
  std::string source;          // "brown", or the input files
  double val_fraction = 0;
  uint64_t seed = 0;
  TokenSplitInfo train, val;

  const TokenSplitInfo& split(TokenSplit s) const { return s == TokenSplit::train ? train : val; }
  nlohmann::json to_json() const;
  // Validates every field; `where` (the manifest's path) prefixes errors.
  static TokenShardsManifest from_json(const nlohmann::json& j, const std::string& where);
};

// "fnv1a64:0123456789abcdef": a fingerprint of a file's bytes (not a cryptographic hash).
std::string file_fingerprint(const std::string& path);

// Which documents go to val: round(n * val_fraction) of them (at least one when val_fraction > 0
// and there are two or more documents, never all), picked by a seeded Fisher-Yates shuffle whose
// generator (splitmix64) is fixed here, so the split is the same on every platform.
std::vector<bool> choose_val_documents(int64_t n_documents, double val_fraction, uint64_t seed);

struct TokenShardsWriteOptions {
  double val_fraction = 0.05;
  uint64_t seed = 1234;
  std::string tokenizer_path;  // recorded with its fingerprint when non-empty
  std::string source;
  bool show_progress = false;
};

// Tokenizes the documents (in parallel; special-token text is encoded as plain text) and writes
// OUT_DIR/{train.bin,val.bin,manifest.json}. The tokenizer must have an EOS token.
TokenShardsManifest write_token_shards(const std::vector<std::string>& documents, const Tokenizer& tokenizer,
                                       const std::string& out_dir, const TokenShardsWriteOptions& options);

// A shard directory, memory-mapped read-only. Batches are pure functions of their arguments, so
// training is reproducible and can resume at any step without saved sampler state.
class TokenShards {
 public:
  // Reads DIR/manifest.json and maps the splits' files; checks the file sizes against the manifest
  // and (unless check_ids is false) that every id is below vocab_size.
  static TokenShards open(const std::string& dir, bool check_ids = true);
  TokenShards(TokenShards&&) noexcept;
  TokenShards& operator=(TokenShards&&) noexcept;
  ~TokenShards();

  const TokenShardsManifest& manifest() const;
  const std::string& dir() const;
  int64_t vocab_size() const { return manifest().vocab_size; }
  int64_t num_tokens(TokenSplit split) const { return manifest().split(split).tokens; }

  int32_t token(TokenSplit split, int64_t index) const;  // throws when out of range
  // Copies tokens [offset, offset + out.size()) of a split as int32.
  void copy_tokens(TokenSplit split, int64_t offset, std::span<int32_t> out) const;

  // Random windows for training: row `row` of step `step` is the seq_len + 1 tokens starting at
  // window_offset(...), uniform over [0, n - seq_len - 1] and a hash of (seed, split, step, row).
  int64_t window_offset(TokenSplit split, uint64_t seed, int64_t step, int64_t row, int64_t seq_len) const;
  // [batch_size, seq_len + 1] int32, row-major: inputs are row[0, seq_len), targets row[1, seq_len].
  std::vector<int32_t> batch(TokenSplit split, int64_t step, int64_t batch_size, int64_t seq_len,
                             uint64_t seed) const;
  void batch_into(TokenSplit split, int64_t step, int64_t batch_size, int64_t seq_len, uint64_t seed,
                  std::span<int32_t> out) const;

  // Non-overlapping windows for evaluation: window k is tokens [k·seq_len, k·seq_len + seq_len].
  int64_t num_sequential_windows(TokenSplit split, int64_t seq_len) const;  // (n - 1) / seq_len
  // Windows first_window .. first_window + batch_size - 1, [batch_size, seq_len + 1]; all must exist.
  std::vector<int32_t> sequential_batch(TokenSplit split, int64_t first_window, int64_t batch_size,
                                        int64_t seq_len) const;

 private:
  struct Impl;
  explicit TokenShards(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsv3
