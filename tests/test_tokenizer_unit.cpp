// Tokenizer logic on small handcrafted tokenizer.json files with hand-computed ids, UTF-8 repair and
// streaming, and the chat format: none of it needs node or the DeepSeek tokenizer.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "infer/chat_format.h"
#include "io/bpe.h"
#include "io/pre_tokenizer.h"
#include "io/tokenizer.h"
#include "io/utf8.h"
#include "test_support.h"

namespace dsv3 {
namespace {

using Ids = std::vector<int32_t>;
using nlohmann::json;

// Throws unless `fn` throws a dsv3::Error whose message contains `needle`.
template <typename Fn>
void expect_error_containing(Fn&& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

// A tiny byte-level BPE. Ids: a0 b1 c2 d3 Ġ4 ab5 bc6 abc7 Ġa8 aa9 <12 >13 s14 Ã15 ©16 -17 a-18 -b19 --20
// 1:21 2:22 3:23 12:24 23:25 x:26 y:27 Â:28 (byte 0x85 spelled U+0144):29; added <s>10 (special), <x>11.
// Merge ranks: 0 "b c", 1 "a b", 2 "Ġ a", 3 "a bc", 4 "a a", 5 "a -", 6 "- b", 7 "- -", 8 "2 3", 9 "1 2".
json tiny_json(bool pair_merges = false) {
  json vocab = {{"a", 0},  {"b", 1},  {"c", 2},  {"d", 3},  {"Ġ", 4},  {"ab", 5},  {"bc", 6},  {"abc", 7},
                {"Ġa", 8}, {"aa", 9}, {"<", 12}, {">", 13}, {"s", 14}, {"Ã", 15}, {"©", 16}, {"-", 17},
                {"a-", 18}, {"-b", 19}, {"--", 20}, {"1", 21}, {"2", 22}, {"3", 23}, {"12", 24}, {"23", 25},
                {"x", 26}, {"y", 27}, {"Â", 28}, {bytes_to_byte_level("\x85"), 29}};
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"b", "c"}, {"a", "b"}, {"Ġ", "a"}, {"a", "bc"}, {"a", "a"}, {"a", "-"}, {"-", "b"}, {"-", "-"}, {"2", "3"}, {"1", "2"}};
  json merge_list = json::array();
  for (const auto& [l, r] : merges) merge_list.push_back(pair_merges ? json::array({l, r}) : json(l + " " + r));
  json added = json::array();
  added.push_back({{"id", 10}, {"content", "<s>"}, {"special", true}, {"normalized", false}});
  added.push_back({{"id", 11}, {"content", "<x>"}, {"special", false}, {"normalized", true}});
  return {{"version", "1.0"},
          {"added_tokens", added},
          {"normalizer", nullptr},
          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
          {"post_processor", nullptr},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}}}};
}

Tokenizer tiny(const json& j = tiny_json()) { return Tokenizer::from_json_text(j.dump(), "", "tiny.json"); }

json split_then_byte_level(json split) {
  return {{"type", "Sequence"},
          {"pretokenizers", {split, {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
}

TEST(TokenizerTiny, MergesByRankNotPosition) {
  const Tokenizer t = tiny();
  EXPECT_EQ(t.encode("abc"), (Ids{7}));   // "b c" (rank 0) before "a b" (rank 1), then "a bc"
  EXPECT_EQ(t.encode("ab"), (Ids{5}));
  EXPECT_EQ(t.encode("dab"), (Ids{3, 5}));
  EXPECT_EQ(t.encode("aaaa"), (Ids{9, 9}));  // equal ranks merge leftmost first
  EXPECT_EQ(t.encode("aaa"), (Ids{9, 0}));
  EXPECT_EQ(t.encode(" ab"), (Ids{4, 5}));   // one GPT-2 piece "Ġab": "a b" (1) beats "Ġ a" (2)
  EXPECT_EQ(t.encode(" a"), (Ids{8}));
  EXPECT_EQ(t.encode(""), (Ids{}));
  EXPECT_EQ(t.encode("é"), (Ids{15, 16}));  // bytes C3 A9 spelled "Ã©"
  EXPECT_EQ(tiny(tiny_json(/*pair_merges=*/true)).encode("abc aaaa dab"), t.encode("abc aaaa dab"));
}

TEST(TokenizerTiny, AddedTokens) {
  const Tokenizer t = tiny();
  EXPECT_EQ(t.encode("a<s>b"), (Ids{0, 10, 1}));
  EXPECT_EQ(t.encode("<x><s>"), (Ids{11, 10}));
  EXPECT_EQ(t.encode("a<s>b", /*allow_special=*/false), (Ids{0, 12, 14, 13, 1}));  // GPT-2 pieces a < s > b
  EXPECT_EQ(t.encode("<x>", /*allow_special=*/false), (Ids{12, 26, 13}));
  EXPECT_EQ(t.decode(Ids{0, 10, 1}), "a<s>b");
  EXPECT_EQ(t.decode(Ids{0, 10, 11, 1}, /*skip_special=*/true), "a<x>b");
  EXPECT_EQ(t.token_to_id("<s>"), 10);
  EXPECT_EQ(t.token_to_id("Ġa"), 8);
  EXPECT_EQ(t.token_to_id("zz"), std::nullopt);
  EXPECT_EQ(t.id_to_token(8), "Ġa");
  EXPECT_TRUE(t.is_special(10));
  EXPECT_FALSE(t.is_special(11));
  EXPECT_EQ(t.vocab_size(), 30);
  EXPECT_EQ(t.bos_id(), std::nullopt);  // no config and no DeepSeek BOS token
}

TEST(TokenizerTiny, AddedTokenStripsWhitespace) {
  json j = tiny_json();
  j["added_tokens"].push_back({{"id", 30}, {"content", "<m>"}, {"special", true}, {"lstrip", true}, {"rstrip", true}});
  EXPECT_EQ(tiny(j).encode("a <m> b"), (Ids{0, 30, 1}));
  EXPECT_EQ(tiny().encode("a <x> b"), (Ids{0, 4, 11, 4, 1}));  // no stripping: "a", " " | <x> | " b" -> Ġ b
}

TEST(TokenizerTiny, SplitBehaviours) {
  auto ids = [](const char* behavior, const char* text, bool invert = false) {
    json j = tiny_json();
    j["pre_tokenizer"] = split_then_byte_level(
        {{"type", "Split"}, {"pattern", {{"String", "-"}}}, {"behavior", behavior}, {"invert", invert}});
    return tiny(j).encode(text);
  };
  EXPECT_EQ(ids("Isolated", "a-b"), (Ids{0, 17, 1}));
  EXPECT_EQ(ids("MergedWithPrevious", "a-b"), (Ids{18, 1}));
  EXPECT_EQ(ids("MergedWithNext", "a-b"), (Ids{0, 19}));
  EXPECT_EQ(ids("Removed", "a-b"), (Ids{0, 1}));
  EXPECT_EQ(ids("Isolated", "a--b"), (Ids{0, 17, 17, 1}));
  EXPECT_EQ(ids("Contiguous", "a--b"), (Ids{0, 20, 1}));
  EXPECT_EQ(ids("Removed", "a-b", /*invert=*/true), (Ids{17}));  // invert: the gaps are the delimiters
  // Without any split, "a-b" is one piece and the merges join across "-".
  json whole = tiny_json();
  whole["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}};
  EXPECT_EQ(tiny(whole).encode("a-b"), (Ids{18, 1}));
}

TEST(TokenizerTiny, DigitsAndPrefixSpace) {
  json j = tiny_json();
  j["pre_tokenizer"] = split_then_byte_level({{"type", "Digits"}, {"individual_digits", true}});
  EXPECT_EQ(tiny(j).encode("123"), (Ids{21, 22, 23}));
  j["pre_tokenizer"] = split_then_byte_level({{"type", "Digits"}, {"individual_digits", false}});
  EXPECT_EQ(tiny(j).encode("a123"), (Ids{0, 21, 25}));  // "2 3" (rank 8) before "1 2" (rank 9)
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
  EXPECT_EQ(tiny(j).encode("ab"), (Ids{4, 5}));
  EXPECT_EQ(tiny(j).encode(" ab"), (Ids{4, 5}));  // already starts with a space
}

TEST(TokenizerTiny, WhitespaceClassIsOniguruma) {
  // HF compiles Split regexes with Oniguruma, whose \s includes U+0085 (NEL); PCRE2's does not.
  json j = tiny_json();
  j["pre_tokenizer"] = split_then_byte_level(
      {{"type", "Split"}, {"pattern", {{"Regex", "\\s"}}}, {"behavior", "Removed"}, {"invert", false}});
  EXPECT_EQ(tiny(j).encode("x\u0085y"), (Ids{26, 27}));
  EXPECT_EQ(tiny(j).encode("x\u3000y"), (Ids{26, 27}));
  j["pre_tokenizer"] = split_then_byte_level(
      {{"type", "Split"}, {"pattern", {{"Regex", "\\S+"}}}, {"behavior", "Removed"}, {"invert", true}});
  EXPECT_EQ(tiny(j).encode("x\u0085y"), (Ids{26, 27}));
  EXPECT_EQ(oniguruma_compatible_pattern("\\s+(?!\\S)|[\\s,]|\\\\s", "test"),
            "[\\s\\x{85}]+(?![^\\s\\x{85}])|[\\s\\x{85},]|\\\\s");
  expect_error_containing([] { oniguruma_compatible_pattern("[\\S]", "here"); }, "\\S inside a character class");
}

TEST(TokenizerTiny, ErrorsNameTheProblem) {
  const Tokenizer t = tiny();
  expect_error_containing([&] { t.encode("z"); }, "byte 0x7a");
  expect_error_containing([&] { t.decode(Ids{0, 31}); }, "token id 31");
  expect_error_containing([&] { t.decode(Ids{-1}); }, "token id -1");
  expect_error_containing([&] { t.id_to_token(1000); }, "token id 1000");
  auto load_modified = [](const std::function<void(json&)>& edit) {
    json j = tiny_json();
    edit(j);
    return tiny(j);
  };
  expect_error_containing([&] { load_modified([](json& j) { j["normalizer"] = {{"type", "NFC"}}; }); }, "'NFC'");
  expect_error_containing([&] { load_modified([](json& j) { j["pre_tokenizer"] = {{"type", "Metaspace"}}; }); },
                          "'Metaspace'");
  expect_error_containing([&] { load_modified([](json& j) { j["pre_tokenizer"] = nullptr; }); }, "ByteLevel");
  expect_error_containing([&] { load_modified([](json& j) { j["model"]["type"] = "WordPiece"; }); }, "'WordPiece'");
  expect_error_containing([&] { load_modified([](json& j) { j["decoder"] = {{"type", "Metaspace"}}; }); },
                          "decoder type 'Metaspace'");
  expect_error_containing([&] { load_modified([](json& j) { j["model"]["merges"].push_back("a zz"); }); }, "'zz'");
  expect_error_containing([&] { load_modified([](json& j) { j["model"]["byte_fallback"] = true; }); },
                          "byte_fallback");
  expect_error_containing(
      [&] {
        load_modified([](json& j) {
          j["pre_tokenizer"] = split_then_byte_level({{"type", "Split"}, {"pattern", {{"Regex", "(["}}}});
        });
      },
      "cannot compile regex");
  expect_error_containing([] { Tokenizer::from_json_text("{not json", "", "broken.json"); }, "broken.json");
  expect_error_containing([] { Tokenizer::from_file("/nonexistent/tokenizer.json"); }, "/nonexistent/tokenizer.json");
  expect_error_containing([] { Tokenizer::from_json_text(tiny_json().dump(), R"({"bos_token": "<nope>"})"); },
                          "'<nope>'");
}

TEST(TokenizerTiny, ConfigNamesBosAndEos) {
  const Tokenizer t = Tokenizer::from_json_text(
      tiny_json().dump(), R"({"bos_token": {"__type": "AddedToken", "content": "<s>"}, "eos_token": "<x>",
                              "add_bos_token": true, "chat_template": "{{ x }}"})");
  EXPECT_EQ(t.bos_id(), 10);
  EXPECT_EQ(t.eos_id(), 11);
  EXPECT_TRUE(t.add_bos_token());
  EXPECT_EQ(t.chat_template(), "{{ x }}");
}

TEST(TokenizerTiny, StreamingHoldsPartialCharacters) {
  const Tokenizer t = tiny();
  TokenStreamDecoder stream(t);
  EXPECT_EQ(stream.push(0), "a");
  EXPECT_EQ(stream.push(15), "");  // 0xC3: first byte of "é"
  EXPECT_EQ(stream.pending_bytes(), 1u);
  EXPECT_EQ(stream.push(16), "é");  // 0xA9 completes it
  EXPECT_EQ(stream.push(15), "");
  EXPECT_EQ(stream.push(0), std::string(kUtf8Replacement) + "a");  // 0xC3 then 'a': invalid at once
  EXPECT_EQ(stream.push(15), "");
  EXPECT_EQ(stream.flush(), kUtf8Replacement);  // never completed
  EXPECT_EQ(stream.pending_bytes(), 0u);
  EXPECT_EQ(t.decode(Ids{15}), kUtf8Replacement);
  TokenStreamDecoder skipping(t, /*skip_special=*/true);
  EXPECT_EQ(skipping.push(10), "");
  EXPECT_EQ(skipping.push(11), "<x>");
}

TEST(TokenizerUtf8, LossyRepairUsesMaximalSubparts) {
  const std::string r(kUtf8Replacement);
  EXPECT_EQ(utf8_lossy("plain ascii"), "plain ascii");
  EXPECT_EQ(utf8_lossy("\xE4\xBD\xA0"), "你");
  EXPECT_EQ(utf8_lossy("\xE4\xBD"), r);                       // truncated: one replacement
  EXPECT_EQ(utf8_lossy("\xE4\xBD" "a"), r + "a");
  EXPECT_EQ(utf8_lossy("\xFF\xFE"), r + r);                   // never valid: one each
  EXPECT_EQ(utf8_lossy("\xC0\xAF"), r + r);                   // overlong
  EXPECT_EQ(utf8_lossy("\xED\xA0\x80"), r + r + r);           // surrogate: E D then continuation bytes
  EXPECT_EQ(utf8_lossy("\xF4\x90\x80\x80"), r + r + r + r);   // above U+10FFFF
  EXPECT_EQ(utf8_lossy("\xF0\x9F\x98"), r);                   // 3 of 4 bytes of an emoji
  EXPECT_EQ(utf8_lossy(std::string("a\0b", 3)), std::string("a\0b", 3));
  EXPECT_TRUE(is_valid_utf8("😀 naïve"));
  EXPECT_FALSE(is_valid_utf8("\x80"));
  // Streaming in any split gives the same text as repairing the whole.
  const std::string bytes = "A\xE4\xBD\xA0\xF0\x9F\x98\x80\xE4\xBD" "B\xFF\xF0\x9F";
  for (size_t cut = 0; cut <= bytes.size(); ++cut) {
    std::string out, pending = bytes.substr(0, cut);
    pending.erase(0, utf8_append_complete(pending, out));
    pending += bytes.substr(cut);
    pending.erase(0, utf8_append_complete(pending, out));
    out += utf8_lossy(pending);
    EXPECT_EQ(out, utf8_lossy(bytes)) << "cut at " << cut;
  }
}

TEST(TokenizerUtf8, ByteLevelAlphabet) {
  EXPECT_EQ(byte_level_code_point(' '), 0x120u);   // 'Ġ'
  EXPECT_EQ(byte_level_code_point('\n'), 0x10Au);  // 'Ċ'
  EXPECT_EQ(byte_level_code_point('a'), uint32_t('a'));
  EXPECT_EQ(byte_level_code_point(0xAD), 0x143u);  // the last of the 68 remapped bytes
  std::string all;
  for (int b = 0; b < 256; ++b) all += char(b);
  std::string back;
  ASSERT_TRUE(byte_level_to_bytes(bytes_to_byte_level(all), back));
  EXPECT_EQ(back, all);
  EXPECT_FALSE(byte_level_to_bytes("｜", back));
}

// Expected strings derived by hand from the chat_template in DeepSeek-V3's tokenizer_config.json:
// BOS, then ns.system_prompt (system contents joined by '\n\n'), then '<｜User｜>' + content per user
// message, '<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>' per assistant message, and a final
// '<｜Assistant｜>' when add_generation_prompt is true. (Compared to the template itself, rendered
// by @lenml/tokenizers, in ChatFormatReference when node is available.)
TEST(ChatFormat, HandDerivedFromTemplate) {
  const std::vector<ChatMessage> chat = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"},
                                         {"user", "2+2?"}};
  EXPECT_EQ(format_chat(chat, true),
            "<｜begin▁of▁sentence｜>Be brief.<｜User｜>Hi<｜Assistant｜>Hello!<｜end▁of▁sentence｜><｜User｜>2+2?"
            "<｜Assistant｜>");
  EXPECT_EQ(format_chat(chat, false),
            "<｜begin▁of▁sentence｜>Be brief.<｜User｜>Hi<｜Assistant｜>Hello!<｜end▁of▁sentence｜><｜User｜>2+2?");
  EXPECT_EQ(format_chat({{"user", "a"}, {"system", "s1"}, {"system", "s2"}}, true),
            "<｜begin▁of▁sentence｜>s1\n\ns2<｜User｜>a<｜Assistant｜>");
  EXPECT_EQ(format_chat({}, false), "<｜begin▁of▁sentence｜>");
  expect_error_containing([] { format_chat({{"tool", "x"}}, true); }, "role 'tool'");
}

// A messages file (dsv3 generate --messages) reads back as the conversation; bad files name the problem.
TEST(ChatFormat, ReadsMessagesFile) {
  testing::TempDir dir("chat_messages");
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir.sub(name)) << text;
    return dir.sub(name);
  };
  const std::vector<ChatMessage> messages = read_chat_messages(
      write("ok.json", R"([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi <｜User｜>"},
                          {"role": "assistant", "content": ""}])"));
  ASSERT_EQ(messages.size(), 3u);
  EXPECT_EQ(messages[1].role, "user");
  EXPECT_EQ(messages[1].content, "Hi <｜User｜>");
  EXPECT_EQ(messages[2].content, "");
  expect_error_containing([&] { read_chat_messages(dir.sub("missing.json")); }, "cannot open");
  expect_error_containing([&] { read_chat_messages(write("bad.json", "[{")); }, "not valid JSON");
  expect_error_containing([&] { read_chat_messages(write("empty.json", "[]")); }, "holds no messages");
  expect_error_containing([&] { read_chat_messages(write("object.json", R"({"role": "user"})")); },
                          "holds no messages");
  expect_error_containing([&] { read_chat_messages(write("nocontent.json", R"([{"role": "user"}])")); },
                          "message 0 has no string");
  expect_error_containing([&] { read_chat_messages(write("tool.json", R"([{"role": "tool", "content": "x"}])")); },
                          "role 'tool'");
}

}  // namespace
}  // namespace dsv3
