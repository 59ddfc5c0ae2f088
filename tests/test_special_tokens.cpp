// The BOS a prompt starts with and the EOS generation stops at (src/infer/special_tokens.h): the
// tokenizer's first, config.json's where the tokenizer names none, checked where they are used.
#include <gtest/gtest.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "infer/special_tokens.h"
#include "io/tokenizer.h"
#include "test_support.h"

namespace dsv3 {
namespace {

using nlohmann::json;

// Ids a0 b1 c2, <s>3 and </s>4 (special); 10 ids with the gap 5..8 and <pad> at 9. With
// `named`, tokenizer_config.json names <s> and </s> as BOS and EOS.
Tokenizer small_tokenizer(bool named) {
  const json j = {{"added_tokens",
                   {{{"id", 3}, {"content", "<s>"}, {"special", true}},
                    {{"id", 4}, {"content", "</s>"}, {"special", true}},
                    {{"id", 9}, {"content", "<pad>"}, {"special", true}}}},
                  {"normalizer", nullptr},
                  {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
                  {"decoder", {{"type", "ByteLevel"}}},
                  {"model", {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}, {"c", 2}}}, {"merges", json::array()}}}};
  const std::string config = named ? json{{"bos_token", "<s>"}, {"eos_token", "</s>"}}.dump() : "";
  return Tokenizer::from_json_text(j.dump(), config, "small.json");
}

ModelConfig config_with(std::optional<int64_t> bos, std::optional<int64_t> eos) {
  ModelConfig c = testing::tiny_v3_config();  // vocab_size 300
  c.bos_token_id = bos;
  c.eos_token_id = eos;
  return c;
}

TEST(SpecialTokens, TokenizerIdsComeFirstWhateverConfigSays) {
  const Tokenizer named = small_tokenizer(true);
  const ModelConfig c = config_with(100000, -1);  // both outside the vocabulary: never used
  EXPECT_EQ(prompt_bos_id(c, named), 3);
  EXPECT_EQ(stop_eos_id(c, named), 4);
}

TEST(SpecialTokens, ConfigIdsStandInForTheTokenizers) {
  const Tokenizer unnamed = small_tokenizer(false);
  ASSERT_FALSE(unnamed.bos_id().has_value());
  EXPECT_EQ(prompt_bos_id(config_with(3, 4), unnamed), 3);
  EXPECT_EQ(stop_eos_id(config_with(3, 4), unnamed), 4);
  EXPECT_EQ(prompt_bos_id(config_with(std::nullopt, std::nullopt), unnamed), std::nullopt);
  EXPECT_EQ(stop_eos_id(config_with(std::nullopt, std::nullopt), unnamed), std::nullopt);
}

// Used, an id outside the model's vocabulary or missing from the tokenizer is an error naming the
// field, its value and what to do.
TEST(SpecialTokens, UnusableConfigIdsAreErrorsWhereUsed) {
  const Tokenizer unnamed = small_tokenizer(false);
  auto expect_error = [](const std::function<void()>& use, const std::vector<std::string>& parts) {
    const std::string msg = testing::error_of(use);
    for (const std::string& part : parts)
      EXPECT_NE(msg.find(part), std::string::npos) << "'" << part << "' missing from: " << msg;
  };
  const ModelConfig outside = config_with(100000, 300);
  expect_error([&] { prompt_bos_id(outside, unnamed); },
               {"bos_token_id is 100000", "vocab_size 300", "cannot start the prompt", "set bos_token_id"});
  expect_error([&] { stop_eos_id(outside, unnamed); },
               {"eos_token_id is 300", "vocab_size 300", "cannot end generation", "set eos_token_id"});
  // In the model's vocabulary (300) but not the tokenizer's: past its ids, or in a gap.
  const ModelConfig undecodable = config_with(12, 6);
  expect_error([&] { prompt_bos_id(undecodable, unnamed); },
               {"bos_token_id is 12", "small.json", "bos_token in tokenizer_config.json"});
  expect_error([&] { stop_eos_id(undecodable, unnamed); },
               {"eos_token_id is 6", "small.json", "eos_token in tokenizer_config.json"});
}

}  // namespace
}  // namespace dsv3
