// Hugging Face tokenizer.json (byte-level BPE, as DeepSeek-V3 ships it) -> token ids, and back.
//
// encode(): added tokens (special or not) are cut out of the raw text first, longest match first
// (HF order: tokens with normalized=false, then normalized=true ones in what remains); the other
// text goes through the pre-tokenizer (pre_tokenizer.h) and byte-level BPE (bpe.h).
// Unsupported tokenizer.json components fail at load with an error naming them.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3 {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;     // skipped by decode(skip_special=true)
  bool normalized = false;  // matched after the (identity) normalizer rather than before it
  bool lstrip = false;      // the match swallows whitespace on its left / right
  bool rstrip = false;
};

class Tokenizer {
 public:
  // Reads tokenizer.json. tokenizer_config.json (bos_token, eos_token, add_bos_token, chat_template)
  // is read from `tokenizer_config_path`, or, when that is empty, from beside tokenizer.json if it
  // exists there; without it BOS/EOS fall back to DeepSeek's <｜begin▁of▁sentence｜> /
  // <｜end▁of▁sentence｜> added tokens when present.
  static Tokenizer from_file(const std::string& tokenizer_json_path, const std::string& tokenizer_config_path = "");
  // Same from file contents (an empty config text means no tokenizer_config.json); `name` is the
  // file name used in error messages.
  static Tokenizer from_json_text(std::string_view tokenizer_json, std::string_view tokenizer_config_json = {},
                                  const std::string& name = "tokenizer.json");
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Text -> ids, never adding BOS/EOS (prepend bos_id() yourself). With allow_special=false no added
  // token is recognised: "<｜User｜>" in user text is tokenized as ordinary characters. (HF's
  // split_special_tokens only does that for special=true tokens, and DeepSeek's role markers are
  // not special.) Invalid UTF-8 is first repaired to U+FFFD as utf8_lossy() does. Thread-safe.
  std::vector<int32_t> encode(std::string_view text, bool allow_special = true) const;

  // Ids -> text. Bytes of consecutive tokens are joined, then invalid UTF-8 becomes U+FFFD.
  // Throws naming the id when one is out of range.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  // The raw bytes one token stands for (possibly part of a UTF-8 sequence); throws on a bad id.
  std::string_view token_bytes(int32_t id) const;

  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  bool add_bos_token() const;  // tokenizer_config.json "add_bos_token" (false without a config)

  // Token text as the vocab spells it (byte-level: " the" is "Ġthe") or an added token's content.
  std::optional<int32_t> token_to_id(std::string_view token) const;
  const std::string& id_to_token(int32_t id) const;  // throws on a bad id
  int64_t vocab_size() const;                         // highest id + 1, added tokens included
  // One byte per id in [0, vocab_size()): 1 where decode() accepts the id, 0 for a gap in the ids.
  // A model's vocab_size may be larger (DeepSeek-V3 pads 128,815 ids to 129,280); ids past the mask
  // are not decodable either. Built once at load and shared: give it to SamplingParams::allowed_ids
  // (infer/sampler.h) so that sampling only ever picks ids this tokenizer can decode.
  std::shared_ptr<const std::vector<uint8_t>> decodable_ids() const;
  bool is_special(int32_t id) const;                  // an added token marked special
  const std::vector<AddedToken>& added_tokens() const;
  const std::string& chat_template() const;  // tokenizer_config.json's Jinja template, "" if none
  const std::string& name() const;           // the file it was loaded from

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Turns ids into text as they are generated: push() returns only complete UTF-8 text and holds back
// the bytes of a character split across tokens; invalid sequences become U+FFFD as soon as they are
// known to be invalid, and flush() turns a held, never-completed tail into U+FFFD. The concatenated
// output equals tokenizer.decode(all ids). The tokenizer must outlive the decoder.
class TokenStreamDecoder {
 public:
  explicit TokenStreamDecoder(const Tokenizer& tokenizer, bool skip_special = false);
  std::string push(int32_t id);
  std::string flush();
  void reset() { pending_.clear(); }
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace dsv3
