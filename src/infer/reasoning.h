// Splits a DeepSeek-R1 style reply into its reasoning and its answer, as text streams in.
//
// An R1 reply is "{reasoning}</think>{content}": DeepSeek-R1's generation prompt already opened the
// reasoning with "<think>\n" (chat_format.h), so the reply starts inside it; a model prompted with
// DeepSeek-V3's template answers directly unless its reply itself begins with "<think>". The split
// follows DeepSeek's API (reasoning_content / content): neither part carries the tags, newlines right
// after "<think>", right before "</think>" and right after it are dropped, and everything after the first
// "</think>" is content. A reply that never closes its reasoning is all reasoning (R1), and a "<think>"
// anywhere but at the very start of the reply is ordinary text.
//
// Streaming: push() takes decoded text in any pieces (TokenStreamDecoder gives whole UTF-8 characters,
// but any byte split works) and returns what can be told apart so far; it holds back only what the next
// piece could still change — a possible partial tag, and newlines that may precede "</think>". finish()
// returns the held text. The concatenated deltas of any split of a text equal split_reasoning() of it.
//
//   ReasoningSplitter splitter(ChatTemplate::deepseek_r1);
//   for (each decoded piece) { ReasoningDelta d = splitter.push(piece); send(d.reasoning, d.content); }
//   ReasoningDelta last = splitter.finish();
#pragma once

#include <string>
#include <string_view>

#include "infer/chat_format.h"

namespace dsv3 {

// deepseek: reasoning and content apart, as above. none: the reply unchanged, all content.
enum class ReasoningFormat { deepseek, none };

// "deepseek" / "none" (dsv3's --reasoning-format); anything else is an error listing both.
ReasoningFormat parse_reasoning_format(std::string_view name);

struct ReasoningDelta {
  std::string reasoning;
  std::string content;
  bool empty() const { return reasoning.empty() && content.empty(); }
};

class ReasoningSplitter {
 public:
  // chat_template: the template the prompt was rendered with (R1's starts the reply inside reasoning).
  explicit ReasoningSplitter(ChatTemplate chat_template, ReasoningFormat format = ReasoningFormat::deepseek);

  ReasoningDelta push(std::string_view text);
  ReasoningDelta finish();  // the held text; the splitter is then back at its initial state

  // True once the reply is known to be in its reasoning and "</think>" has not come yet.
  bool in_reasoning() const { return state_ == State::reasoning; }

 private:
  enum class State { start, reasoning, content };
  void run(ReasoningDelta& out);

  bool starts_in_reasoning_;
  bool passthrough_;
  State state_ = State::start;
  bool trim_leading_ = false;  // drop newlines at the start of the current part
  std::string pending_;        // not yet classified: a possible tag prefix, or newlines before one
};

// The whole reply at once: what the deltas of a ReasoningSplitter add up to.
ReasoningDelta split_reasoning(std::string_view reply, ChatTemplate chat_template,
                               ReasoningFormat format = ReasoningFormat::deepseek);

}  // namespace dsv3
