#include "infer/chat_format.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/tokenizer.h"

namespace dsv3 {

namespace {

constexpr const char* kBos = "<｜begin▁of▁sentence｜>";
constexpr const char* kEos = "<｜end▁of▁sentence｜>";
constexpr const char* kUser = "<｜User｜>";
constexpr const char* kAssistant = "<｜Assistant｜>";

void check_role(const ChatMessage& m, size_t index) {
  DSV3_CHECK(m.role == "system" || m.role == "user" || m.role == "assistant", "[chat] message ", index, " has role '",
             m.role, "': only system, user and assistant are supported");
}

// The template gathers every system message first, joined by a blank line.
std::string system_prompt(const std::vector<ChatMessage>& messages) {
  std::string prompt;
  bool first = true;
  for (size_t i = 0; i < messages.size(); ++i) {
    check_role(messages[i], i);
    if (messages[i].role != "system") continue;
    if (!first) prompt += "\n\n";
    prompt += messages[i].content;
    first = false;
  }
  return prompt;
}

}  // namespace

std::string format_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::string text = kBos + system_prompt(messages);
  for (const ChatMessage& m : messages) {
    if (m.role == "user") text += kUser + m.content;
    else if (m.role == "assistant") text += kAssistant + m.content + kEos;
  }
  if (add_generation_prompt) text += kAssistant;
  return text;
}

std::vector<int32_t> encode_chat(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt) {
  auto id_of = [&](const char* token) {
    const std::optional<int32_t> id = tokenizer.token_to_id(token);
    DSV3_CHECK(id.has_value(), "[chat] ", tokenizer.name(), " has no token ", token,
               ": DeepSeek's chat format needs DeepSeek-V3's tokenizer");
    return *id;
  };
  const int32_t bos = id_of(kBos), eos = id_of(kEos), user = id_of(kUser), assistant = id_of(kAssistant);
  std::vector<int32_t> ids{bos};
  auto append_text = [&](const std::string& text) {
    const std::vector<int32_t> part = tokenizer.encode(text, /*allow_special=*/false);
    ids.insert(ids.end(), part.begin(), part.end());
  };
  append_text(system_prompt(messages));
  for (const ChatMessage& m : messages) {
    if (m.role == "user") {
      ids.push_back(user);
      append_text(m.content);
    } else if (m.role == "assistant") {
      ids.push_back(assistant);
      append_text(m.content);
      ids.push_back(eos);
    }
  }
  if (add_generation_prompt) ids.push_back(assistant);
  return ids;
}

std::vector<ChatMessage> read_chat_messages(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  DSV3_CHECK(in.good(), "[chat] cannot open ", path, ": give a JSON file of messages");
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::parse_error& e) {
    DSV3_FAIL("[chat] ", path, " is not valid JSON (", e.what(), ")");
  }
  const char* layout = ": expected [{\"role\": \"user\", \"content\": \"...\"}, ...]";
  DSV3_CHECK(j.is_array() && !j.empty(), "[chat] ", path, " holds no messages", layout);
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < j.size(); ++i) {
    const nlohmann::json& m = j[i];
    DSV3_CHECK(m.is_object() && m.contains("role") && m["role"].is_string() && m.contains("content") &&
                   m["content"].is_string(),
               "[chat] ", path, ": message ", i, " has no string \"role\" and \"content\"", layout);
    messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
    check_role(messages.back(), i);
  }
  return messages;
}

}  // namespace dsv3
