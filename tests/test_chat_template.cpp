// The two chat templates (src/infer/chat_format.h): DeepSeek-R1's rendering by hand from its template's
// rules, the template names, and recognising a tokenizer_config.json chat_template. DeepSeek-V3's
// rendering is checked in test_tokenizer_unit.cpp (by hand) and test_tokenizer.cpp (against the template).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "infer/chat_format.h"

namespace dsv3 {
namespace {

constexpr ChatTemplate kR1 = ChatTemplate::deepseek_r1;
constexpr ChatTemplate kV3 = ChatTemplate::deepseek_v3;

// Expected strings derived by hand from DeepSeek-R1's template rules: as DeepSeek-V3's, except that an
// assistant message contributes only what follows its last "</think>" and the generation prompt is
// "<｜Assistant｜><think>\n".
TEST(ChatTemplateR1, MultiTurnWithReasoningMatchesHandDerived) {
  const std::vector<ChatMessage> chat = {
      {"system", "Be brief."},
      {"user", "What is 2+2?"},
      {"assistant", "<think>\nTwo and two.\n</think>\n\n4"},
      {"user", "And 3+3?"},
      {"assistant", "Six, with no reasoning shown."},
      {"system", "Use digits."},
      {"user", "Then 4+4?"},
  };
  EXPECT_EQ(format_chat(chat, true, kR1),
            "<｜begin▁of▁sentence｜>Be brief.\n\nUse digits.<｜User｜>What is 2+2?<｜Assistant｜>\n\n4"
            "<｜end▁of▁sentence｜><｜User｜>And 3+3?<｜Assistant｜>Six, with no reasoning shown.<｜end▁of▁sentence｜>"
            "<｜User｜>Then 4+4?<｜Assistant｜><think>\n");
  EXPECT_EQ(format_chat(chat, false, kR1),
            "<｜begin▁of▁sentence｜>Be brief.\n\nUse digits.<｜User｜>What is 2+2?<｜Assistant｜>\n\n4"
            "<｜end▁of▁sentence｜><｜User｜>And 3+3?<｜Assistant｜>Six, with no reasoning shown.<｜end▁of▁sentence｜>"
            "<｜User｜>Then 4+4?");
  // V3 keeps the reasoning in the history and ends in a bare <｜Assistant｜>.
  EXPECT_EQ(format_chat(chat, true, kV3),
            "<｜begin▁of▁sentence｜>Be brief.\n\nUse digits.<｜User｜>What is 2+2?<｜Assistant｜><think>\nTwo and two."
            "\n</think>\n\n4<｜end▁of▁sentence｜><｜User｜>And 3+3?<｜Assistant｜>Six, with no reasoning shown."
            "<｜end▁of▁sentence｜><｜User｜>Then 4+4?<｜Assistant｜>");
  EXPECT_EQ(format_chat(chat, true), format_chat(chat, true, kV3));  // V3 is the default
}

TEST(ChatTemplateR1, HistoryKeepsWhatFollowsTheLastClosingTag) {
  auto rendered = [](const std::string& reply) {
    return format_chat({{"user", "q"}, {"assistant", reply}}, false, kR1);
  };
  const std::string head = "<｜begin▁of▁sentence｜><｜User｜>q<｜Assistant｜>";
  const std::string eos = "<｜end▁of▁sentence｜>";
  EXPECT_EQ(rendered("a</think>b</think>c"), head + "c" + eos);
  EXPECT_EQ(rendered("</think>"), head + eos);
  EXPECT_EQ(rendered("<think>unfinished"), head + "<think>unfinished" + eos);  // no </think>: kept whole
  EXPECT_EQ(rendered(""), head + eos);
  // User text is never split.
  EXPECT_EQ(format_chat({{"user", "x</think>y"}}, false, kR1), "<｜begin▁of▁sentence｜><｜User｜>x</think>y");
  EXPECT_THROW(format_chat({{"tool", "x"}}, true, kR1), Error);
}

TEST(ChatTemplateNames, ParseNameAndReject) {
  EXPECT_EQ(parse_chat_template("deepseek-v3"), kV3);
  EXPECT_EQ(parse_chat_template("deepseek-r1"), kR1);
  EXPECT_STREQ(chat_template_name(kV3), "deepseek-v3");
  EXPECT_STREQ(chat_template_name(kR1), "deepseek-r1");
  try {
    parse_chat_template("chatml");
    ADD_FAILURE() << "accepted 'chatml'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("give deepseek-v3 or deepseek-r1"), std::string::npos) << e.what();
  }
}

// Jinja sources written for these tests in the shape of DeepSeek's: a V3-style one (role markers, no
// reasoning), and R1-style ones (the history split on </think> and the <think> + newline generation prompt,
// the newline as a Jinja escape or a real newline).
const std::string kV3Style =
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ '<｜User｜>' + m['content'] }}"
    "{% elif m['role'] == 'assistant' %}{{ '<｜Assistant｜>' + m['content'] + eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<｜Assistant｜>' }}{% endif %}";
const std::string kR1StyleBody =
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ '<｜User｜>' + m['content'] }}"
    "{% elif m['role'] == 'assistant' %}{% set reply = m['content'] %}{% if '</think>' in reply %}"
    "{% set reply = reply.split('</think>')[-1] %}{% endif %}{{ '<｜Assistant｜>' + reply + eos_token }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<｜Assistant｜><think>";

// Runs detect_chat_template and returns what it wrote to stderr.
std::string detect_noting(const std::string& jinja, ChatTemplate expected) {
  ::testing::internal::CaptureStderr();
  const ChatTemplate got = detect_chat_template(jinja);
  const std::string note = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(got, expected) << jinja;
  return note;
}

TEST(ChatTemplateDetect, RecognisesV3AndR1Silently) {
  EXPECT_EQ(detect_noting(kV3Style, kV3), "");
  EXPECT_EQ(detect_noting(kR1StyleBody + "\\n' }}{% endif %}", kR1), "");  // the escape, as in JSON-decoded files
  EXPECT_EQ(detect_noting(kR1StyleBody + "\n' }}{% endif %}", kR1), "");   // a newline character
}

TEST(ChatTemplateDetect, OthersFallBackToV3WithANote) {
  std::string note = detect_noting("", kV3);
  EXPECT_NE(note.find("no chat_template"), std::string::npos) << note;
  EXPECT_NE(note.find("--chat-template"), std::string::npos) << note;
  note = detect_noting("{% for m in messages %}<|im_start|>{{ m['role'] }}\n<think>\n</think>{% endfor %}", kV3);
  EXPECT_NE(note.find("not DeepSeek's"), std::string::npos) << note;
  // Reasoning tags without R1's generation prompt (a template whose replies open <think> themselves).
  note = detect_noting(kR1StyleBody + "' }}{% endif %}", kV3);
  EXPECT_NE(note.find("<think> tags but not both"), std::string::npos) << note;
}

}  // namespace
}  // namespace dsv3
