#include "infer/reasoning.h"

#include <algorithm>

#include "core/error.h"

namespace dsv3 {

namespace {

constexpr std::string_view kOpen = "<think>";
constexpr std::string_view kClose = "</think>";

// The length of the longest end of `text` that is a proper prefix of `tag` (a tag that may be completed
// by the next piece).
size_t partial_tag_at_end(std::string_view text, std::string_view tag) {
  for (size_t n = std::min(text.size(), tag.size() - 1); n > 0; --n)
    if (text.substr(text.size() - n) == tag.substr(0, n)) return n;
  return 0;
}

// Drops the newlines `text` starts with; false when nothing else is left to decide on yet.
bool drop_leading_newlines(std::string& text) {
  const size_t first = text.find_first_not_of('\n');
  text.erase(0, first == std::string::npos ? text.size() : first);
  return !text.empty();
}

}  // namespace

ReasoningFormat parse_reasoning_format(std::string_view name) {
  if (name == "deepseek") return ReasoningFormat::deepseek;
  if (name == "none") return ReasoningFormat::none;
  DSV3_FAIL("[reasoning] unknown reasoning format '", name, "': give deepseek or none");
}

ReasoningSplitter::ReasoningSplitter(ChatTemplate chat_template, ReasoningFormat format)
    : starts_in_reasoning_(chat_template == ChatTemplate::deepseek_r1), passthrough_(format == ReasoningFormat::none) {}

void ReasoningSplitter::run(ReasoningDelta& out) {
  while (true) {
    if (state_ == State::start) {
      // Only the reply's first characters may open a reasoning part; wait while they could still be "<think>".
      if (pending_.size() < kOpen.size() && kOpen.substr(0, pending_.size()) == pending_) return;
      const bool opened = pending_.starts_with(kOpen);
      if (opened) pending_.erase(0, kOpen.size());
      state_ = opened || starts_in_reasoning_ ? State::reasoning : State::content;
      trim_leading_ = state_ == State::reasoning;
      continue;
    }
    if (trim_leading_) {
      if (!drop_leading_newlines(pending_)) return;
      trim_leading_ = false;
    }
    if (state_ == State::content) {
      out.content += pending_;
      pending_.clear();
      return;
    }
    const size_t close = pending_.find(kClose);
    const size_t hold_from = close != std::string::npos ? close : pending_.size() - partial_tag_at_end(pending_, kClose);
    // Newlines just before "</think>" are dropped; before a possible one they wait.
    size_t end = hold_from;
    while (end > 0 && pending_[end - 1] == '\n') --end;
    out.reasoning.append(pending_, 0, end);
    if (close == std::string::npos) {
      pending_.erase(0, end);
      return;
    }
    pending_.erase(0, close + kClose.size());
    state_ = State::content;
    trim_leading_ = true;
  }
}

ReasoningDelta ReasoningSplitter::push(std::string_view text) {
  ReasoningDelta out;
  if (passthrough_) {
    out.content = text;
    return out;
  }
  pending_ += text;
  run(out);
  return out;
}

ReasoningDelta ReasoningSplitter::finish() {
  ReasoningDelta out;
  // What is still held is ordinary text: the start of a reply too short to be "<think>", or newlines and
  // a partial "</think>" at the end of an unclosed reasoning part.
  const bool reasoning = state_ == State::reasoning || (state_ == State::start && starts_in_reasoning_);
  (reasoning ? out.reasoning : out.content) = std::move(pending_);
  pending_.clear();
  state_ = State::start;
  trim_leading_ = false;
  return out;
}

ReasoningDelta split_reasoning(std::string_view reply, ChatTemplate chat_template, ReasoningFormat format) {
  ReasoningSplitter splitter(chat_template, format);
  ReasoningDelta out = splitter.push(reply);
  ReasoningDelta tail = splitter.finish();
  out.reasoning += tail.reasoning;
  out.content += tail.content;
  return out;
}

}  // namespace dsv3
