// ReasoningSplitter (src/infer/reasoning.h): a reply's reasoning and answer told apart as it streams, the
// same for every way the text is cut into pieces.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "infer/reasoning.h"

namespace dsv3 {
namespace {

// Feeds `pieces` to a splitter and joins its deltas.
ReasoningDelta stream(const std::vector<std::string>& pieces, ChatTemplate chat_template,
                      ReasoningFormat format = ReasoningFormat::deepseek) {
  ReasoningSplitter splitter(chat_template, format);
  ReasoningDelta all;
  auto add = [&](const ReasoningDelta& d) {
    all.reasoning += d.reasoning;
    all.content += d.content;
  };
  for (const std::string& piece : pieces) add(splitter.push(piece));
  add(splitter.finish());
  return all;
}

std::vector<std::string> bytes_of(const std::string& text) {
  std::vector<std::string> pieces;
  for (char c : text) pieces.emplace_back(1, c);
  return pieces;
}

void expect_split(const ReasoningDelta& got, const std::string& reasoning, const std::string& content,
                  const std::string& what) {
  EXPECT_EQ(got.reasoning, reasoning) << what;
  EXPECT_EQ(got.content, content) << what;
}

// Replies that exercise every rule: tags at the edges, newlines around them, partial tags, UTF-8.
const std::vector<std::string>& sample_replies() {
  static const std::vector<std::string> replies = {
      "Let me add: 2+2=4.\n</think>\n\nThe answer is 4.",
      "<think>\nHmm, 思考 😀 </thin k? </th\n\nstill</think>\n\nDone. </think> stays text.",
      "\n\nreasoning with\n\ninner blank lines\n\n\n</think>answer\n\nwith blank lines\n",
      "no closing tag at all, < and </ and </think",
      "<thin",
      "</think>",
      "",
      "\n",
      "<think></think>",
      "x<think>y</think>z",
  };
  return replies;
}

TEST(ReasoningSplitter, R1StartsInReasoningAndDropsTagsAndNewlines) {
  for (auto pieces : {std::vector<std::string>{"Let me add: 2+2=4.\n</think>\n\nThe answer is 4."},
                      bytes_of("Let me add: 2+2=4.\n</think>\n\nThe answer is 4.")})
    expect_split(stream(pieces, ChatTemplate::deepseek_r1), "Let me add: 2+2=4.", "The answer is 4.", "R1 reply");
  // The reply may repeat the <think> the prompt opened; newlines inside either part are kept.
  expect_split(split_reasoning("<think>\n\na\n\nb\n\n</think>\n\nc\n\nd\n", ChatTemplate::deepseek_r1), "a\n\nb",
               "c\n\nd\n", "R1 reply opening <think> again");
  // Only the first </think> ends the reasoning.
  expect_split(split_reasoning("r</think>c</think>d", ChatTemplate::deepseek_r1), "r", "c</think>d", "two tags");
}

TEST(ReasoningSplitter, NoClosingTagIsAllReasoning) {
  for (auto pieces : {std::vector<std::string>{"still thinking\n\n</thi"}, bytes_of("still thinking\n\n</thi")}) {
    ReasoningSplitter splitter(ChatTemplate::deepseek_r1);
    ReasoningDelta seen;
    for (const std::string& piece : pieces) {
      const ReasoningDelta d = splitter.push(piece);
      seen.reasoning += d.reasoning;
      EXPECT_EQ(d.content, "");
      EXPECT_TRUE(splitter.in_reasoning());
    }
    // The newlines and the partial tag are held (they could still precede or be "</think>").
    EXPECT_EQ(seen.reasoning, "still thinking");
    const ReasoningDelta tail = splitter.finish();
    EXPECT_EQ(tail.reasoning, "\n\n</thi");
    EXPECT_EQ(tail.content, "");
  }
}

TEST(ReasoningSplitter, V3IsContentUnlessTheReplyOpensThink) {
  expect_split(split_reasoning("Hello!\n</think> is text here", ChatTemplate::deepseek_v3), "",
               "Hello!\n</think> is text here", "V3 without <think>");
  expect_split(split_reasoning(" <think>late</think>", ChatTemplate::deepseek_v3), "", " <think>late</think>",
               "V3 with <think> after the start");
  expect_split(split_reasoning("\n<think>x</think>y", ChatTemplate::deepseek_v3), "", "\n<think>x</think>y",
               "V3 with a newline before <think>");
  for (auto pieces : {std::vector<std::string>{"<think>\nplan\n</think>\n\nanswer"},
                      bytes_of("<think>\nplan\n</think>\n\nanswer"), std::vector<std::string>{"<th", "ink>\npl", "an\n</",
                                                                                             "think", ">\n", "\nanswer"}})
    expect_split(stream(pieces, ChatTemplate::deepseek_v3), "plan", "answer", "V3 with a leading <think>");
  // A reply too short to tell is text of the part it started in.
  expect_split(split_reasoning("<thin", ChatTemplate::deepseek_v3), "", "<thin", "V3 partial <think>");
  expect_split(split_reasoning("<thin", ChatTemplate::deepseek_r1), "<thin", "", "R1 partial <think>");
}

TEST(ReasoningSplitter, PartialTagIsHeldNotLostOrRepeated) {
  ReasoningSplitter splitter(ChatTemplate::deepseek_r1);
  EXPECT_EQ(splitter.push("abc</th").reasoning, "abc");
  const ReasoningDelta d = splitter.push("ink>\nanswer");
  EXPECT_EQ(d.reasoning, "");
  EXPECT_EQ(d.content, "answer");
  EXPECT_FALSE(splitter.in_reasoning());
  // A prefix that turns out not to be the tag comes out once, as reasoning.
  ReasoningSplitter other(ChatTemplate::deepseek_r1);
  EXPECT_EQ(other.push("a</thi").reasoning, "a");
  EXPECT_EQ(other.push("s is not it").reasoning, "</this is not it");
  EXPECT_EQ(other.finish().reasoning, "");
}

TEST(ReasoningSplitter, EverySplitGivesTheUnsplitResult) {
  std::mt19937 rng(7);
  for (ChatTemplate chat_template : {ChatTemplate::deepseek_v3, ChatTemplate::deepseek_r1}) {
    for (const std::string& text : sample_replies()) {
      const ReasoningDelta whole = split_reasoning(text, chat_template);
      const std::string what = std::string(chat_template_name(chat_template)) + " on \"" + text + "\"";
      expect_split(stream(bytes_of(text), chat_template), whole.reasoning, whole.content, what + ", byte by byte");
      for (size_t cut = 0; cut <= text.size(); ++cut)
        expect_split(stream({text.substr(0, cut), text.substr(cut)}, chat_template), whole.reasoning, whole.content,
                     what + ", cut at " + std::to_string(cut));
      for (int trial = 0; trial < 20; ++trial) {
        std::vector<std::string> pieces;
        for (size_t at = 0; at < text.size();) {
          const size_t n = std::min<size_t>(text.size() - at, rng() % 5);  // empty pieces too
          pieces.push_back(text.substr(at, n));
          at += n;
        }
        expect_split(stream(pieces, chat_template), whole.reasoning, whole.content, what + ", random pieces");
      }
    }
  }
}

TEST(ReasoningSplitter, NoneLeavesTheReplyInline) {
  const std::string text = "<think>\nplan\n</think>\n\nanswer";
  for (ChatTemplate chat_template : {ChatTemplate::deepseek_v3, ChatTemplate::deepseek_r1}) {
    expect_split(stream(bytes_of(text), chat_template, ReasoningFormat::none), "", text, "none");
    expect_split(split_reasoning(text, chat_template, ReasoningFormat::none), "", text, "none, whole");
  }
}

TEST(ReasoningSplitter, SplitterIsReusableAfterFinish) {
  ReasoningSplitter splitter(ChatTemplate::deepseek_r1);
  splitter.push("first</think>one");
  splitter.finish();
  ReasoningDelta d = splitter.push("second</think>two");
  EXPECT_EQ(d.reasoning, "second");
  EXPECT_EQ(d.content, "two");
}

TEST(ReasoningFormatNames, ParseAndReject) {
  EXPECT_EQ(parse_reasoning_format("deepseek"), ReasoningFormat::deepseek);
  EXPECT_EQ(parse_reasoning_format("none"), ReasoningFormat::none);
  try {
    parse_reasoning_format("raw");
    ADD_FAILURE() << "accepted 'raw'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("give deepseek or none"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dsv3
