#include "io/utf8.h"

namespace dsv3 {

Utf8Step utf8_step(const uint8_t* bytes, size_t n) {
  const uint8_t lead = bytes[0];
  if (lead < 0x80) return {Utf8Status::valid, 1, lead};
  // Well-formed sequences (Unicode Table 3-7): the lead byte fixes the length and the range of the
  // second byte (which excludes overlongs, surrogates and code points above U+10FFFF).
  size_t length;
  uint8_t second_lo = 0x80, second_hi = 0xBF;
  uint32_t code_point;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
    code_point = lead & 0x1F;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    code_point = lead & 0x0F;
    if (lead == 0xE0) second_lo = 0xA0;
    if (lead == 0xED) second_hi = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    code_point = lead & 0x07;
    if (lead == 0xF0) second_lo = 0x90;
    if (lead == 0xF4) second_hi = 0x8F;
  } else {
    return {Utf8Status::invalid, 1, 0};  // continuation byte, C0/C1 or F5..FF as a lead
  }
  for (size_t i = 1; i < length; ++i) {
    if (i >= n) return {Utf8Status::incomplete, n, 0};
    const uint8_t lo = i == 1 ? second_lo : 0x80, hi = i == 1 ? second_hi : 0xBF;
    if (bytes[i] < lo || bytes[i] > hi) return {Utf8Status::invalid, i, 0};
    code_point = (code_point << 6) | (bytes[i] & 0x3F);
  }
  return {Utf8Status::valid, length, code_point};
}

bool is_valid_utf8(std::string_view text) {
  const auto* p = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    const Utf8Step step = utf8_step(p + i, n - i);
    if (step.status != Utf8Status::valid) return false;
    i += step.length;
  }
  return true;
}

namespace {

// Shared by utf8_lossy and utf8_append_complete: repairs bytes into out, stopping before a trailing
// incomplete sequence unless `final` is set (then it becomes one U+FFFD).
size_t repair(std::string_view text, bool final, std::string& out) {
  const auto* p = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    size_t run = i;  // copy runs of ASCII and valid sequences in one append
    while (run < n) {
      if (p[run] < 0x80) {
        ++run;
        continue;
      }
      const Utf8Step step = utf8_step(p + run, n - run);
      if (step.status != Utf8Status::valid) break;
      run += step.length;
    }
    out.append(text.data() + i, run - i);
    i = run;
    if (i == n) break;
    const Utf8Step step = utf8_step(p + i, n - i);
    if (step.status == Utf8Status::incomplete && !final) return i;
    out.append(kUtf8Replacement);
    i += step.length;
  }
  return n;
}

}  // namespace

std::string utf8_lossy(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  repair(text, /*final=*/true, out);
  return out;
}

size_t utf8_append_complete(std::string_view bytes, std::string& out) { return repair(bytes, /*final=*/false, out); }

bool is_unicode_white_space(uint32_t c) {
  if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D);
  switch (c) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

void append_utf8(uint32_t c, std::string& out) {
  if (c < 0x80) {
    out += char(c);
  } else if (c < 0x800) {
    out += char(0xC0 | (c >> 6));
    out += char(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += char(0xE0 | (c >> 12));
    out += char(0x80 | ((c >> 6) & 0x3F));
    out += char(0x80 | (c & 0x3F));
  } else {
    out += char(0xF0 | (c >> 18));
    out += char(0x80 | ((c >> 12) & 0x3F));
    out += char(0x80 | ((c >> 6) & 0x3F));
    out += char(0x80 | (c & 0x3F));
  }
}

}  // namespace dsv3
