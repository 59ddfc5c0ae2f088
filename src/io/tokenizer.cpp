#include "io/tokenizer.h"

#include <array>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/bpe.h"
#include "io/pre_tokenizer.h"
#include "io/utf8.h"

namespace dsv3 {

namespace {

constexpr std::string_view kDeepSeekBos = "<｜begin▁of▁sentence｜>";
constexpr std::string_view kDeepSeekEos = "<｜end▁of▁sentence｜>";

// Byte trie over added-token contents, answering "longest token starting here".
class AddedTokenTrie {
 public:
  AddedTokenTrie() : terminal_(1, -1) {}
  bool empty() const { return terminal_.size() == 1; }
  void add(std::string_view content, int32_t index) {
    int32_t node = 0;
    for (char c : content) {
      const uint64_t key = (uint64_t(node) << 8) | uint8_t(c);
      auto it = children_.find(key);
      if (it == children_.end()) {
        it = children_.emplace(key, int32_t(terminal_.size())).first;
        terminal_.push_back(-1);
      }
      node = it->second;
    }
    terminal_[size_t(node)] = index;
    first_byte_[uint8_t(content[0])] = true;
  }
  // Index of the longest token that starts at text[pos] and ends by `end`, or -1; sets length.
  int32_t longest_at(std::string_view text, size_t pos, size_t end, size_t& length) const {
    if (!first_byte_[uint8_t(text[pos])]) return -1;
    int32_t node = 0, found = -1;
    for (size_t i = pos; i < end; ++i) {
      auto it = children_.find((uint64_t(node) << 8) | uint8_t(text[i]));
      if (it == children_.end()) break;
      node = it->second;
      if (terminal_[size_t(node)] >= 0) {
        found = terminal_[size_t(node)];
        length = i + 1 - pos;
      }
    }
    return found;
  }

 private:
  std::vector<int32_t> terminal_;                  // per node: added-token index ending here, or -1
  std::unordered_map<uint64_t, int32_t> children_;  // (node << 8 | byte) -> child node
  std::array<bool, 256> first_byte_{};
};

struct Section {
  size_t begin, end;
  int32_t added = -1;  // index into added tokens, -1 for ordinary text
};

size_t previous_code_point(std::string_view s, size_t i) {
  do --i;
  while (i > 0 && (uint8_t(s[i]) & 0xC0) == 0x80);
  return i;
}

uint32_t code_point_at(std::string_view s, size_t i, size_t& length) {
  const Utf8Step step = utf8_step(reinterpret_cast<const uint8_t*>(s.data()) + i, s.size() - i);
  length = step.length;
  return step.status == Utf8Status::valid ? step.code_point : 0xFFFD;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  DSV3_CHECK(in.good(), "[tokenizer] cannot open ", path, ": check that the file exists and is readable");
  std::ostringstream text;
  text << in.rdbuf();
  DSV3_CHECK(!in.bad(), "[tokenizer] failed reading ", path);
  return text.str();
}

void check_normalizer(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return;
  const std::string type = j.value("type", std::string("?"));
  DSV3_CHECK(type == "Sequence" && j.contains("normalizers") && j["normalizers"].is_array(), "[tokenizer] ", where,
             ": normalizer type '", type, "' is not supported (only null or an empty Sequence, as DeepSeek-V3 uses)");
  for (const nlohmann::json& k : j["normalizers"]) check_normalizer(k, where);
}

// tokenizer_config.json names tokens as a plain string or an AddedToken object {"content": ...}.
std::optional<std::string> config_token(const nlohmann::json& config, const char* key) {
  if (!config.contains(key)) return std::nullopt;
  const nlohmann::json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return std::nullopt;
}

}  // namespace

struct Tokenizer::Impl {
  std::string name;
  BpeModel bpe;
  PreTokenizer pre_tokenizer;
  std::vector<AddedToken> added;
  TokenMap added_by_content;
  AddedTokenTrie raw_trie;         // normalized=false tokens: matched first
  AddedTokenTrie normalized_trie;  // normalized=true tokens: matched in the text between those
  std::vector<std::string> spelling;  // id -> vocab spelling / added content ("" for unused ids)
  std::vector<std::string> bytes;     // id -> raw bytes
  enum Kind : uint8_t { unused, vocab, added_plain, added_special };
  std::vector<Kind> kind;
  std::shared_ptr<const std::vector<uint8_t>> decodable;  // kind != unused, per id
  std::optional<int32_t> bos, eos;
  bool add_bos = false;
  std::string chat_template;

  void check_id(int32_t id) const {
    DSV3_CHECK(id >= 0 && size_t(id) < kind.size() && kind[size_t(id)] != unused, "[tokenizer] token id ", id,
               " is not in ", name, " (valid ids are 0..", int64_t(kind.size()) - 1,
               "): the ids do not come from this tokenizer");
  }

  void split_added(std::string_view text, const AddedTokenTrie& trie, size_t begin, size_t end,
                   std::vector<Section>& out) const {
    size_t pos = begin, text_start = begin;
    while (pos < end) {
      size_t length = 0;
      const int32_t index = trie.longest_at(text, pos, end, length);
      if (index < 0) {
        ++pos;
        continue;
      }
      size_t match_begin = pos, match_end = pos + length;
      const AddedToken& token = added[size_t(index)];
      while (token.lstrip && match_begin > text_start) {
        const size_t prev = previous_code_point(text, match_begin);
        size_t n = 0;
        if (!is_unicode_white_space(code_point_at(text, prev, n))) break;
        match_begin = prev;
      }
      while (token.rstrip && match_end < end) {
        size_t n = 0;
        if (!is_unicode_white_space(code_point_at(text, match_end, n))) break;
        match_end += n;
      }
      if (match_begin > text_start) out.push_back({text_start, match_begin, -1});
      out.push_back({match_begin, match_end, index});
      pos = text_start = match_end;
    }
    if (text_start < end) out.push_back({text_start, end, -1});
  }
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_file(const std::string& tokenizer_json_path, const std::string& tokenizer_config_path) {
  std::string config_path = tokenizer_config_path;
  if (config_path.empty()) {
    const auto sibling = std::filesystem::path(tokenizer_json_path).parent_path() / "tokenizer_config.json";
    if (std::filesystem::is_regular_file(sibling)) config_path = sibling.string();
  }
  const std::string json = read_file(tokenizer_json_path);
  const std::string config = config_path.empty() ? std::string() : read_file(config_path);
  return from_json_text(json, config, tokenizer_json_path);
}

Tokenizer Tokenizer::from_json_text(std::string_view tokenizer_json, std::string_view tokenizer_config_json,
                                    const std::string& name) {
  auto impl = std::make_unique<Impl>();
  impl->name = name;
  try {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(tokenizer_json);
    } catch (const nlohmann::json::parse_error& e) {
      DSV3_FAIL("[tokenizer] ", name, " is not valid JSON: ", e.what());
    }
    DSV3_CHECK(j.is_object(), "[tokenizer] ", name, " is not a JSON object: is it a Hugging Face tokenizer.json?");
    check_normalizer(j.value("normalizer", nlohmann::json()), name);
    impl->pre_tokenizer = PreTokenizer::from_json(j.value("pre_tokenizer", nlohmann::json()), name);
    impl->bpe = BpeModel::from_json(j.value("model", nlohmann::json()), name);
    // post_processor only adds template tokens (BOS...) when asked to; encode() never does, so any is accepted.
    const nlohmann::json decoder = j.value("decoder", nlohmann::json());
    DSV3_CHECK(decoder.is_object() && decoder.value("type", std::string()) == "ByteLevel", "[tokenizer] ", name,
               ": decoder ", decoder.is_object() ? "type '" + decoder.value("type", std::string("?")) + "'" : "null",
               " is not supported (only ByteLevel)");

    int64_t size = 0;
    for (const auto& [token, id] : impl->bpe.vocab()) size = std::max<int64_t>(size, int64_t(id) + 1);
    const nlohmann::json added = j.value("added_tokens", nlohmann::json::array());
    DSV3_CHECK(added.is_array(), "[tokenizer] ", name, ": added_tokens is not an array");
    for (const nlohmann::json& a : added) {
      DSV3_CHECK(a.is_object() && a.contains("id") && a["id"].is_number_integer() && a.contains("content") &&
                     a["content"].is_string() && !a["content"].get<std::string>().empty(),
                 "[tokenizer] ", name, ": added token without an integer id and non-empty content: ",
                 a.dump().substr(0, 200));
      AddedToken t;
      const int64_t id = a["id"].get<int64_t>();
      DSV3_CHECK(id >= 0 && id < (int64_t(1) << 30), "[tokenizer] ", name, ": added token id ", id, " out of range");
      t.id = int32_t(id);
      t.content = a["content"].get<std::string>();
      t.special = a.value("special", false);
      t.normalized = a.value("normalized", !t.special);
      t.lstrip = a.value("lstrip", false);
      t.rstrip = a.value("rstrip", false);
      DSV3_CHECK(!a.value("single_word", false), "[tokenizer] ", name, ": added token '", t.content,
                 "' uses single_word, which is not supported");
      DSV3_CHECK(!impl->added_by_content.count(t.content), "[tokenizer] ", name, ": added token '", t.content,
                 "' is listed twice");
      impl->added_by_content.emplace(t.content, int32_t(impl->added.size()));
      (t.normalized ? impl->normalized_trie : impl->raw_trie).add(t.content, int32_t(impl->added.size()));
      size = std::max<int64_t>(size, id + 1);
      impl->added.push_back(std::move(t));
    }

    impl->spelling.assign(size_t(size), std::string());
    impl->bytes.assign(size_t(size), std::string());
    impl->kind.assign(size_t(size), Impl::unused);
    for (const auto& [token, id] : impl->bpe.vocab()) {
      impl->spelling[size_t(id)] = token;
      // A token outside the byte alphabet decodes as its own UTF-8, as HF's ByteLevel decoder does.
      if (!byte_level_to_bytes(token, impl->bytes[size_t(id)])) impl->bytes[size_t(id)] = token;
      impl->kind[size_t(id)] = Impl::vocab;
    }
    for (const AddedToken& t : impl->added) {  // an added token overrides a vocab entry with its id
      impl->spelling[size_t(t.id)] = t.content;
      impl->bytes[size_t(t.id)] = t.content;
      impl->kind[size_t(t.id)] = t.special ? Impl::added_special : Impl::added_plain;
    }
    auto decodable = std::make_shared<std::vector<uint8_t>>(impl->kind.size());
    for (size_t id = 0; id < impl->kind.size(); ++id) (*decodable)[id] = impl->kind[id] != Impl::unused;
    impl->decodable = std::move(decodable);

    nlohmann::json config = nlohmann::json::object();
    if (!tokenizer_config_json.empty()) {
      try {
        config = nlohmann::json::parse(tokenizer_config_json);
      } catch (const nlohmann::json::parse_error& e) {
        DSV3_FAIL("[tokenizer] the tokenizer_config.json given with ", name, " is not valid JSON: ", e.what());
      }
      DSV3_CHECK(config.is_object(), "[tokenizer] the tokenizer_config.json given with ", name, " is not an object");
    }
    Tokenizer tokenizer(std::move(impl));
    Impl& m = *tokenizer.impl_;
    auto resolve = [&](const char* key, std::string_view fallback) -> std::optional<int32_t> {
      if (const std::optional<std::string> token = config_token(config, key)) {
        const std::optional<int32_t> id = tokenizer.token_to_id(*token);
        DSV3_CHECK(id.has_value(), "[tokenizer] tokenizer_config.json ", key, " '", *token, "' is not a token of ",
                   name, ": the two files do not belong together");
        return id;
      }
      auto it = m.added_by_content.find(fallback);
      if (it == m.added_by_content.end()) return std::nullopt;
      return m.added[size_t(it->second)].id;
    };
    m.bos = resolve("bos_token", kDeepSeekBos);
    m.eos = resolve("eos_token", kDeepSeekEos);
    m.add_bos = config.value("add_bos_token", false);
    if (config.contains("chat_template") && config["chat_template"].is_string())
      m.chat_template = config["chat_template"].get<std::string>();
    return tokenizer;
  } catch (const nlohmann::json::exception& e) {
    DSV3_FAIL("[tokenizer] ", name, " has an unexpected structure: ", e.what());
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool allow_special) const {
  const Impl& m = *impl_;
  std::string repaired;
  if (!is_valid_utf8(text)) {
    repaired = utf8_lossy(text);
    text = repaired;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 1);
  auto encode_text = [&](std::string_view piece_source) {
    m.pre_tokenizer.split(piece_source, [&](std::string_view piece) { m.bpe.encode_piece(piece, ids); });
  };
  if (!allow_special || m.added.empty()) {
    encode_text(text);
    return ids;
  }
  std::vector<Section> first, sections;
  m.split_added(text, m.raw_trie, 0, text.size(), first);
  for (const Section& s : first) {
    if (s.added >= 0) sections.push_back(s);
    else m.split_added(text, m.normalized_trie, s.begin, s.end, sections);
  }
  for (const Section& s : sections) {
    if (s.added >= 0) ids.push_back(m.added[size_t(s.added)].id);
    else encode_text(text.substr(s.begin, s.end - s.begin));
  }
  return ids;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string raw;
  for (int32_t id : ids) {
    impl_->check_id(id);
    if (skip_special && impl_->kind[size_t(id)] == Impl::added_special) continue;
    raw += impl_->bytes[size_t(id)];
  }
  return is_valid_utf8(raw) ? raw : utf8_lossy(raw);
}

std::string_view Tokenizer::token_bytes(int32_t id) const {
  impl_->check_id(id);
  return impl_->bytes[size_t(id)];
}

std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos; }
std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos; }
bool Tokenizer::add_bos_token() const { return impl_->add_bos; }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  auto a = impl_->added_by_content.find(token);
  if (a != impl_->added_by_content.end()) return impl_->added[size_t(a->second)].id;
  auto v = impl_->bpe.vocab().find(token);
  if (v != impl_->bpe.vocab().end()) return v->second;
  return std::nullopt;
}

const std::string& Tokenizer::id_to_token(int32_t id) const {
  impl_->check_id(id);
  return impl_->spelling[size_t(id)];
}

int64_t Tokenizer::vocab_size() const { return int64_t(impl_->kind.size()); }
std::shared_ptr<const std::vector<uint8_t>> Tokenizer::decodable_ids() const { return impl_->decodable; }

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && size_t(id) < impl_->kind.size() && impl_->kind[size_t(id)] == Impl::added_special;
}

const std::vector<AddedToken>& Tokenizer::added_tokens() const { return impl_->added; }
const std::string& Tokenizer::chat_template() const { return impl_->chat_template; }
const std::string& Tokenizer::name() const { return impl_->name; }

TokenStreamDecoder::TokenStreamDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(&tokenizer), skip_special_(skip_special) {}

std::string TokenStreamDecoder::push(int32_t id) {
  const std::string_view bytes = tokenizer_->token_bytes(id);  // validates the id
  if (skip_special_ && tokenizer_->is_special(id)) return {};
  pending_.append(bytes);
  std::string out;
  const size_t used = utf8_append_complete(pending_, out);
  pending_.erase(0, used);
  return out;
}

std::string TokenStreamDecoder::flush() {
  std::string out = utf8_lossy(pending_);
  pending_.clear();
  return out;
}

}  // namespace dsv3
