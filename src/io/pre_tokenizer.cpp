#include "io/pre_tokenizer.h"

#include <algorithm>
#include <cctype>
#include <deque>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace dsv3 {

namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof(buffer));
  return reinterpret_cast<const char*>(buffer);
}

// Per-thread match state: PCRE2 needs a match-data block and (for JIT) a stack; both are reused
// across calls so matching allocates nothing.
struct MatchState {
  pcre2_match_data* data = nullptr;
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;
  MatchState() {
    data = pcre2_match_data_create(4, nullptr);
    context = pcre2_match_context_create(nullptr);
    jit_stack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr);
    if (context && jit_stack) pcre2_jit_stack_assign(context, nullptr, jit_stack);
  }
  ~MatchState() {
    pcre2_jit_stack_free(jit_stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
};

MatchState& match_state() {
  thread_local MatchState state;
  return state;
}

size_t next_code_point(std::string_view s, size_t i) {
  ++i;
  while (i < s.size() && (uint8_t(s[i]) & 0xC0) == 0x80) ++i;
  return i;
}

// GPT-2's pre-tokenization regex, which HF's ByteLevel applies when use_regex is true.
constexpr const char* kByteLevelPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::string escape_literal(const std::string& s) {
  std::string out;
  for (char c : s) {
    const auto u = uint8_t(c);
    if (u < 0x80 && !std::isalnum(u)) out += '\\';
    out += c;
  }
  return out;
}

SplitBehavior parse_behavior(const std::string& name, const std::string& where) {
  if (name == "Removed") return SplitBehavior::removed;
  if (name == "Isolated") return SplitBehavior::isolated;
  if (name == "MergedWithPrevious") return SplitBehavior::merged_with_previous;
  if (name == "MergedWithNext") return SplitBehavior::merged_with_next;
  if (name == "Contiguous") return SplitBehavior::contiguous;
  DSV3_FAIL("[tokenizer] ", where, ": Split behavior '", name,
            "' is not supported (expected Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous)");
}

struct Segment {
  size_t begin, end;
  bool match;
};

// Applies HF's SplitDelimiterBehavior to the alternating match / non-match segments of one piece.
void apply_behavior(SplitBehavior behavior, const std::vector<Segment>& in, std::vector<Segment>& out) {
  out.clear();
  switch (behavior) {
    case SplitBehavior::isolated:
      out = in;
      return;
    case SplitBehavior::removed:
      for (const Segment& s : in)
        if (!s.match) out.push_back(s);
      return;
    case SplitBehavior::merged_with_previous: {
      bool previous_match = false;
      for (const Segment& s : in) {
        if (s.match && !previous_match && !out.empty()) out.back().end = s.end;
        else out.push_back(s);
        previous_match = s.match;
      }
      return;
    }
    case SplitBehavior::merged_with_next: {
      bool previous_match = false;  // scanning right to left: "previous" is the segment to the right
      for (size_t i = in.size(); i-- > 0;) {
        const Segment& s = in[i];
        if (s.match && !previous_match && !out.empty()) out.back().begin = s.begin;
        else out.push_back(s);
        previous_match = s.match;
      }
      std::reverse(out.begin(), out.end());
      return;
    }
    case SplitBehavior::contiguous: {
      bool previous_match = false;
      for (const Segment& s : in) {
        if (s.match == previous_match && !out.empty()) out.back().end = s.end;
        else out.push_back(s);
        previous_match = s.match;
      }
      return;
    }
  }
}

// Scratch segment lists, one pair per pipeline level (a deque so references stay valid as it grows).
std::deque<std::pair<std::vector<Segment>, std::vector<Segment>>>& scratch() {
  thread_local std::deque<std::pair<std::vector<Segment>, std::vector<Segment>>> lists;
  return lists;
}

}  // namespace

PcreRegex::PcreRegex(const std::string& pattern, const std::string& where) : where_(where) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
  DSV3_CHECK(code != nullptr, "[tokenizer] ", where, ": cannot compile regex /", pattern, "/ at offset ", offset,
             ": ", pcre2_message(error));
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter when JIT is unavailable
  code_ = code;
}

PcreRegex::~PcreRegex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

bool PcreRegex::find(std::string_view subject, size_t start, size_t& begin, size_t& end) const {
  MatchState& state = match_state();
  DSV3_CHECK(state.data != nullptr && state.context != nullptr, "[tokenizer] out of memory creating PCRE2 match data");
  // Input was validated as UTF-8 once; skipping PCRE2's check keeps repeated matching linear.
  const int rc = pcre2_match(static_cast<const pcre2_code*>(code_), reinterpret_cast<PCRE2_SPTR>(subject.data()),
                             subject.size(), start, PCRE2_NO_UTF_CHECK, state.data, state.context);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  DSV3_CHECK(rc >= 0, "[tokenizer] ", where_, ": regex matching failed on a ", subject.size(),
             "-byte piece: ", pcre2_message(rc));
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(state.data);
  begin = ovector[0];
  end = ovector[1];
  return true;
}

std::string oniguruma_compatible_pattern(std::string_view p, const std::string& where) {
  // Oniguruma's Unicode classes (its doc/RE): \s = U+0009-000D, U+0085, Zl, Zp, Zs; \w = L, M, N, Pc;
  // \h = hex digit. PCRE2 with UCP: \s lacks U+0085, \w lacks M and most Pc, \h is horizontal space.
  struct Class {
    char escape;
    const char* outside;  // replacement outside a character class
    const char* inside;   // replacement inside one (nullptr: cannot be expressed there)
  };
  static const Class classes[] = {
      {'s', "[\\s\\x{85}]", "\\s\\x{85}"},
      {'S', "[^\\s\\x{85}]", nullptr},
      {'w', "[\\p{L}\\p{M}\\p{N}\\p{Pc}]", "\\p{L}\\p{M}\\p{N}\\p{Pc}"},
      {'W', "[^\\p{L}\\p{M}\\p{N}\\p{Pc}]", nullptr},
      {'h', "[0-9a-fA-F]", "0-9a-fA-F"},
      {'H', "[^0-9a-fA-F]", nullptr},
  };
  std::string out;
  out.reserve(p.size() + 16);
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[++i];
      const Class* found = nullptr;
      for (const Class& k : classes)
        if (k.escape == e) found = &k;
      if (!found) {
        out += '\\';
        out += e;
      } else if (!in_class) {
        out += found->outside;
      } else {
        DSV3_CHECK(found->inside != nullptr, "[tokenizer] ", where, ": regex uses \\", e,
                   " inside a character class, which this tokenizer cannot translate from Oniguruma to PCRE2");
        out += found->inside;
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];  // a leading ']' is literal
      continue;
    }
    if (in_class && c == '[' && i + 1 < p.size() && p[i + 1] == ':') {  // POSIX class [:name:]
      const size_t close = p.find(":]", i + 2);
      if (close != std::string_view::npos) {
        out.append(p.substr(i, close + 2 - i));
        i = close + 1;
        continue;
      }
    }
    if (in_class && c == ']') in_class = false;
    out += c;
  }
  return out;
}

PreTokenizer::PreTokenizer() = default;
PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

PreTokenizer PreTokenizer::from_json(const nlohmann::json& config, const std::string& where) {
  DSV3_CHECK(!config.is_null(), "[tokenizer] ", where,
             ": pre_tokenizer is null; only byte-level BPE tokenizers (with a ByteLevel pre-tokenizer) are supported");
  // Flatten nested Sequences into one list of components.
  std::vector<const nlohmann::json*> components;
  std::function<void(const nlohmann::json&)> flatten = [&](const nlohmann::json& j) {
    DSV3_CHECK(j.is_object() && j.contains("type") && j["type"].is_string(), "[tokenizer] ", where,
               ": a pre_tokenizer entry has no \"type\": ", j.dump().substr(0, 200));
    if (j["type"] == "Sequence") {
      DSV3_CHECK(j.contains("pretokenizers") && j["pretokenizers"].is_array(), "[tokenizer] ", where,
                 ": pre_tokenizer Sequence has no \"pretokenizers\" array");
      for (const nlohmann::json& k : j["pretokenizers"]) flatten(k);
    } else {
      components.push_back(&j);
    }
  };
  flatten(config);

  PreTokenizer result;
  bool byte_level_seen = false;
  for (size_t index = 0; index < components.size(); ++index) {
    const nlohmann::json& j = *components[index];
    const std::string type = j["type"];
    const std::string here = cat(where, " pre_tokenizer ", type, " (step ", index, ")");
    DSV3_CHECK(!byte_level_seen, "[tokenizer] ", here,
               ": comes after ByteLevel; only tokenizers whose ByteLevel step is last are supported");
    if (type == "Split") {
      DSV3_CHECK(j.contains("pattern") && j["pattern"].is_object(), "[tokenizer] ", here, ": missing \"pattern\"");
      const nlohmann::json& pattern = j["pattern"];
      std::string regex;
      if (pattern.contains("Regex") && pattern["Regex"].is_string()) {
        regex = oniguruma_compatible_pattern(pattern["Regex"].get<std::string>(), here);
      } else if (pattern.contains("String") && pattern["String"].is_string()) {
        regex = escape_literal(pattern["String"].get<std::string>());
        DSV3_CHECK(!regex.empty(), "[tokenizer] ", here, ": empty String pattern");
      } else {
        DSV3_FAIL("[tokenizer] ", here, ": pattern must be {\"Regex\": ...} or {\"String\": ...}, got ",
                  pattern.dump().substr(0, 200));
      }
      Step step{Step::regex_split, std::make_unique<PcreRegex>(regex, here)};
      step.behavior = parse_behavior(j.value("behavior", std::string("Isolated")), here);
      step.invert = j.value("invert", false);
      result.steps_.push_back(std::move(step));
    } else if (type == "Digits") {
      // HF splits on char::is_numeric (general category N): one piece per digit, or per run.
      const bool individual = j.value("individual_digits", false);
      Step step{Step::regex_split, std::make_unique<PcreRegex>(individual ? "\\p{N}" : "\\p{N}+", here)};
      result.steps_.push_back(std::move(step));
    } else if (type == "ByteLevel") {
      byte_level_seen = true;
      // HF defaults when a field is absent: add_prefix_space true, use_regex true.
      if (j.value("add_prefix_space", true)) result.steps_.push_back(Step{Step::prefix_space, nullptr});
      if (j.value("use_regex", true)) {
        Step step{Step::regex_split,
                  std::make_unique<PcreRegex>(oniguruma_compatible_pattern(kByteLevelPattern, here), here)};
        result.steps_.push_back(std::move(step));
      }
    } else {
      DSV3_FAIL("[tokenizer] ", where, ": pre_tokenizer type '", type,
                "' is not supported (supported: Sequence, Split, Digits, ByteLevel)");
    }
  }
  DSV3_CHECK(byte_level_seen, "[tokenizer] ", where,
             ": pre_tokenizer has no ByteLevel step; only byte-level BPE tokenizers are supported");
  return result;
}

void PreTokenizer::split(std::string_view text, const std::function<void(std::string_view)>& fn) const {
  auto& lists = scratch();
  while (lists.size() < steps_.size()) lists.emplace_back();
  run(0, text, fn);
}

void PreTokenizer::run(size_t level, std::string_view text, const std::function<void(std::string_view)>& fn) const {
  if (text.empty()) return;
  if (level == steps_.size()) {
    fn(text);
    return;
  }
  const Step& step = steps_[level];
  if (step.kind == Step::prefix_space) {
    if (text.front() == ' ') {
      run(level + 1, text, fn);
    } else {
      std::string spaced;
      spaced.reserve(text.size() + 1);
      spaced += ' ';
      spaced += text;
      run(level + 1, spaced, fn);
    }
    return;
  }
  auto& [segments, pieces] = scratch()[level];
  segments.clear();
  size_t start = 0, previous_end = 0, begin = 0, end = 0;
  while (start <= text.size() && step.regex->find(text, start, begin, end)) {
    if (begin > previous_end) segments.push_back({previous_end, begin, step.invert});
    if (end > begin) {
      segments.push_back({begin, end, !step.invert});
      previous_end = start = end;
    } else {
      previous_end = begin;
      start = begin < text.size() ? next_code_point(text, begin) : text.size() + 1;  // step over an empty match
    }
  }
  if (previous_end < text.size()) segments.push_back({previous_end, text.size(), step.invert});
  apply_behavior(step.behavior, segments, pieces);
  for (const Segment& s : pieces)
    if (s.end > s.begin) run(level + 1, text.substr(s.begin, s.end - s.begin), fn);
}

}  // namespace dsv3
