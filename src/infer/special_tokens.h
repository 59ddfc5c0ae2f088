// The BOS a prompt starts with and the EOS generation stops at, for a model and its tokenizer.
//
// The tokenizer's own come first (tokenizer_config.json's bos_token / eos_token, else DeepSeek's
// <｜begin▁of▁sentence｜> / <｜end▁of▁sentence｜> added tokens), as Hugging Face's tokenizer adds BOS;
// config.json's bos_token_id / eos_token_id stand in when the tokenizer names none (Hugging Face's
// generation stops at config.json's eos_token_id). config.json's ids are checked here, where they are
// used, not when the config loads (parse_model_config only warns): an id outside the model's
// vocabulary, or one the tokenizer cannot decode, is an error that names the field and the fix.
#pragma once

#include <cstdint>
#include <optional>

#include "model/config.h"

namespace dsv3 {

class Tokenizer;

std::optional<int32_t> prompt_bos_id(const ModelConfig& config, const Tokenizer& tokenizer);
std::optional<int32_t> stop_eos_id(const ModelConfig& config, const Tokenizer& tokenizer);

}  // namespace dsv3
