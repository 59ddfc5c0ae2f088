// Pre-tokenization of Hugging Face tokenizer.json files: the "pre_tokenizer" section splits text into
// pieces before BPE. Supported steps (HF tokenizers semantics): Split (Regex or String pattern, all
// five delimiter behaviours, invert), Digits (individual_digits), ByteLevel (add_prefix_space,
// use_regex) and Sequence of those. Regexes run on PCRE2 (UTF + UCP, JIT when available).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace dsv3 {

// A compiled PCRE2 pattern. Subjects must be valid UTF-8 (the tokenizer validates input once).
class PcreRegex {
 public:
  // `where` names the pattern's origin for error messages (e.g. "tokenizer.json pre_tokenizer[2]").
  PcreRegex(const std::string& pattern, const std::string& where);
  ~PcreRegex();
  PcreRegex(const PcreRegex&) = delete;
  PcreRegex& operator=(const PcreRegex&) = delete;

  // First match in subject at or after `start`: true and [begin, end) set, or false.
  bool find(std::string_view subject, size_t start, size_t& begin, size_t& end) const;

 private:
  void* code_ = nullptr;  // pcre2_code_8*
  std::string where_;
};

// HF tokenizers compiles patterns with Oniguruma, whose Unicode `\s` also matches U+0085 (NEL);
// PCRE2's `\s` under UCP does not. Rewrites `\s`/`\S` so PCRE2 matches what Oniguruma matches.
std::string oniguruma_compatible_pattern(std::string_view pattern, const std::string& where);

enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

class PreTokenizer {
 public:
  // `config` is tokenizer.json's "pre_tokenizer"; it must end in a ByteLevel step (byte-level BPE).
  static PreTokenizer from_json(const nlohmann::json& config, const std::string& where);
  PreTokenizer();
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;

  // Calls fn(piece) for each non-empty pre-token of `text` in order. Pieces are UTF-8 text: views
  // into `text`, or into a temporary when ByteLevel's add_prefix_space inserts a space.
  void split(std::string_view text, const std::function<void(std::string_view)>& fn) const;

 private:
  struct Step {
    enum Kind { regex_split, prefix_space } kind;
    std::unique_ptr<PcreRegex> regex;
    SplitBehavior behavior = SplitBehavior::isolated;
    bool invert = false;
  };
  void run(size_t level, std::string_view text, const std::function<void(std::string_view)>& fn) const;

  std::vector<Step> steps_;
};

}  // namespace dsv3
