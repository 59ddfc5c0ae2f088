// Byte-level BPE (GPT-2 scheme, as Hugging Face tokenizers' "BPE" model with a ByteLevel
// pre-tokenizer): each byte of a pre-token starts as its own symbol, written in vocab/merges with
// GPT-2's printable byte alphabet; then the adjacent pair with the lowest merge rank is merged,
// leftmost first on ties, until no listed pair remains.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace dsv3 {

// GPT-2's byte -> code point map: printable Latin-1 bytes map to themselves, the other 68 bytes to
// U+0100.. in order (so ' ' is 'Ġ' U+0120 and '\n' is 'Ċ' U+010A).
uint32_t byte_level_code_point(uint8_t byte);
// The byte-level spelling of raw bytes (what the vocab and merges are written in).
std::string bytes_to_byte_level(std::string_view bytes);
// Maps a byte-level token back to raw bytes; false (out untouched) if a character is outside the alphabet.
bool byte_level_to_bytes(std::string_view token, std::string& out);

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  // `model` is tokenizer.json's "model" object (type "BPE"); `where` names the file in errors.
  static BpeModel from_json(const nlohmann::json& model, const std::string& where);
  BpeModel();
  ~BpeModel();
  BpeModel(BpeModel&&) noexcept;
  BpeModel& operator=(BpeModel&&) noexcept;

  const TokenMap& vocab() const { return vocab_; }
  size_t num_merges() const;

  // Appends the ids of one pre-token given as raw UTF-8 bytes. Thread-safe (the word cache locks).
  void encode_piece(std::string_view bytes, std::vector<int32_t>& out) const;

 private:
  struct MergeTable;
  struct Cache;
  void merge_word(std::string_view bytes, std::vector<int32_t>& out) const;

  TokenMap vocab_;                       // byte-level token text -> id
  std::array<int32_t, 256> byte_ids_{};  // id of each single-byte token, -1 if absent
  std::unique_ptr<MergeTable> merges_;
  std::unique_ptr<Cache> cache_;
  int32_t unk_id_ = -1;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;  // whole pre-tokens found in the vocab skip merging (HF "ignore_merges")
  std::string where_;
};

}  // namespace dsv3
