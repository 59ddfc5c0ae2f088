#include "infer/special_tokens.h"

#include "core/error.h"
#include "io/tokenizer.h"

namespace dsv3 {

namespace {

// config.json's `field`, used because the tokenizer names no such token (tokenizer_config.json `key`).
std::optional<int32_t> config_id_for(const ModelConfig& config, const Tokenizer& tokenizer, const char* field,
                                     const char* key, const char* use) {
  const std::optional<int32_t> id = config_token_id(config, field, use);
  if (!id) return std::nullopt;
  const std::vector<uint8_t>& decodable = *tokenizer.decodable_ids();
  DSV3_CHECK(size_t(*id) < decodable.size() && decodable[size_t(*id)], "[config] config.json ", field, " is ", *id,
             ", an id ", tokenizer.name(), " does not have, so it cannot ", use, ": set ", field,
             " in config.json to the tokenizer's id for that token, or name the token as ", key,
             " in tokenizer_config.json");
  return id;
}

}  // namespace

std::optional<int32_t> prompt_bos_id(const ModelConfig& config, const Tokenizer& tokenizer) {
  if (tokenizer.bos_id()) return tokenizer.bos_id();
  return config_id_for(config, tokenizer, "bos_token_id", "bos_token", "start the prompt");
}

std::optional<int32_t> stop_eos_id(const ModelConfig& config, const Tokenizer& tokenizer) {
  if (tokenizer.eos_id()) return tokenizer.eos_id();
  return config_id_for(config, tokenizer, "eos_token_id", "eos_token", "end generation");
}

}  // namespace dsv3
