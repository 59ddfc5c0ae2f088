// UTF-8 scanning for the tokenizer: validation, lossy repair and incremental (streaming) decoding.
// Ill-formed input is replaced by U+FFFD one "maximal subpart" at a time (Unicode §3.9, the rule the
// WHATWG TextDecoder and Rust's from_utf8_lossy follow), so a byte stream decoded in pieces gives
// exactly the text it gives when decoded whole.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace dsv3 {

inline constexpr std::string_view kUtf8Replacement = "\xEF\xBF\xBD";  // U+FFFD

enum class Utf8Status { valid, invalid, incomplete };

struct Utf8Step {
  Utf8Status status;
  size_t length;      // valid: bytes of the code point; invalid: bytes of the maximal subpart to replace;
                      // incomplete: bytes available (all a well-formed prefix of one code point)
  uint32_t code_point;  // valid only
};

// Looks at the code point starting at bytes[0] (n >= 1 bytes available).
Utf8Step utf8_step(const uint8_t* bytes, size_t n);

bool is_valid_utf8(std::string_view text);

// Returns `text` with every ill-formed subsequence replaced by U+FFFD (a truncated sequence at the
// end is ill-formed too).
std::string utf8_lossy(std::string_view text);

// Appends the longest prefix of `bytes` that ends on a code point boundary, repaired as utf8_lossy
// does, to `out`; returns how many bytes were consumed. The rest (at most 3 bytes) is a well-formed
// but incomplete sequence that more bytes may still complete.
size_t utf8_append_complete(std::string_view bytes, std::string& out);

// Unicode White_Space (PropList.txt): what HF tokenizers' added-token lstrip/rstrip strip.
bool is_unicode_white_space(uint32_t code_point);

void append_utf8(uint32_t code_point, std::string& out);

}  // namespace dsv3
