// Pieces shared by the dsv3 subcommands.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "io/tokenizer.h"
#include "model/model.h"

namespace dsv3::cli {

struct LoadedModel {
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
};

// Loads DIR's model and DIR/tokenizer.json, checking that every token id fits the model's vocabulary.
LoadedModel load_model_with_tokenizer(const std::string& dir);
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

// "1,2, 3" -> {1, 2, 3}; errors name the offending item.
std::vector<int32_t> parse_token_list(const std::string& text);

}  // namespace dsv3::cli
