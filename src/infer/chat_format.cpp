#include "infer/chat_format.h"

#include <cstdio>
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
constexpr const char* kThinkOpen = "<think>\n";  // what R1's generation prompt adds after <｜Assistant｜>
constexpr std::string_view kThinkClose = "</think>";

bool contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

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

// What an assistant message contributes to the history: R1's template keeps only the text after the
// last "</think>" (Jinja's content.split('</think>')[-1]), V3's the whole message.
std::string_view assistant_history(std::string_view content, ChatTemplate chat_template) {
  if (chat_template != ChatTemplate::deepseek_r1) return content;
  const size_t close = content.rfind(kThinkClose);
  return close == std::string_view::npos ? content : content.substr(close + kThinkClose.size());
}

}  // namespace

ChatTemplate parse_chat_template(std::string_view name) {
  if (name == "deepseek-v3") return ChatTemplate::deepseek_v3;
  if (name == "deepseek-r1") return ChatTemplate::deepseek_r1;
  DSV3_FAIL("[chat] unknown chat template '", name, "': give deepseek-v3 or deepseek-r1");
}

const char* chat_template_name(ChatTemplate chat_template) {
  return chat_template == ChatTemplate::deepseek_r1 ? "deepseek-r1" : "deepseek-v3";
}

ChatTemplate detect_chat_template(std::string_view jinja_template) {
  const bool roles = contains(jinja_template, kUser) && contains(jinja_template, kAssistant);
  // Inside a Jinja string literal the newline is usually the escape \n; accept a raw newline too.
  const bool opens_think = contains(jinja_template, "<think>\\n") || contains(jinja_template, "<think>\n");
  const bool splits_think = contains(jinja_template, kThinkClose);
  if (roles && opens_think && splits_think) return ChatTemplate::deepseek_r1;
  if (roles && !splits_think && !contains(jinja_template, "<think>")) return ChatTemplate::deepseek_v3;
  const char* why = jinja_template.empty() ? "the tokenizer has no chat_template (no tokenizer_config.json beside "
                                             "tokenizer.json, or none in it)"
                    : !roles ? "the chat_template is not DeepSeek's (it lacks <｜User｜> or <｜Assistant｜>)"
                             : "the chat_template has <think> tags but not both of DeepSeek-R1's: the <think>\\n "
                               "generation prompt and the </think> history split";
  std::fprintf(stderr, "[chat] note: %s; rendering conversations as deepseek-v3 (choose with --chat-template "
                       "deepseek-v3|deepseek-r1)\n", why);
  return ChatTemplate::deepseek_v3;
}

std::string format_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                        ChatTemplate chat_template) {
  std::string text = kBos + system_prompt(messages);
  for (const ChatMessage& m : messages) {
    if (m.role == "user") text += kUser + m.content;
    else if (m.role == "assistant") text += kAssistant + std::string(assistant_history(m.content, chat_template)) + kEos;
  }
  if (add_generation_prompt) {
    text += kAssistant;
    if (chat_template == ChatTemplate::deepseek_r1) text += kThinkOpen;
  }
  return text;
}

std::vector<int32_t> encode_chat(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt, ChatTemplate chat_template) {
  auto id_of = [&](const char* token) {
    const std::optional<int32_t> id = tokenizer.token_to_id(token);
    DSV3_CHECK(id.has_value(), "[chat] ", tokenizer.name(), " has no token ", token,
               ": DeepSeek's chat format needs its chat tokens, which DeepSeek-V3's tokenizer and those of dsv3 "
               "train-tokenizer hold (train the tokenizer again, and the model on its data)");
    return *id;
  };
  const int32_t bos = id_of(kBos), eos = id_of(kEos), user = id_of(kUser), assistant = id_of(kAssistant);
  std::vector<int32_t> ids{bos};
  auto append_text = [&](std::string_view text, bool allow_special = false) {
    const std::vector<int32_t> part = tokenizer.encode(text, allow_special);
    ids.insert(ids.end(), part.begin(), part.end());
  };
  append_text(system_prompt(messages));
  for (const ChatMessage& m : messages) {
    if (m.role == "user") {
      ids.push_back(user);
      append_text(m.content);
    } else if (m.role == "assistant") {
      ids.push_back(assistant);
      append_text(assistant_history(m.content, chat_template));
      ids.push_back(eos);
    }
  }
  if (add_generation_prompt) {
    ids.push_back(assistant);
    // The template's own text: <think> becomes its token where the tokenizer has one (R1's does).
    if (chat_template == ChatTemplate::deepseek_r1) append_text(kThinkOpen, /*allow_special=*/true);
  }
  return ids;
}

const std::vector<std::string>& deepseek_chat_tokens() {
  static const std::vector<std::string> tokens = {"<think>",
                                                   "</think>",
                                                   kUser,
                                                   kAssistant,
                                                   "<｜tool▁calls▁begin｜>",
                                                   "<｜tool▁calls▁end｜>",
                                                   "<｜tool▁call▁begin｜>",
                                                   "<｜tool▁call▁end｜>",
                                                   "<｜tool▁outputs▁begin｜>",
                                                   "<｜tool▁outputs▁end｜>",
                                                   "<｜tool▁output▁begin｜>",
                                                   "<｜tool▁output▁end｜>",
                                                   "<｜tool▁sep｜>"};
  return tokens;
}

const std::string& deepseek_chat_template() {
  static const std::string chat_template =
      "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}"
      "{% endif %}{% set ns = namespace(is_first=false, is_tool=false, "
      "is_output_first=true, system_prompt='', is_first_sp=true) %}"
      "{%- for message in messages %}{%- if message['role'] == 'system' %}"
      "{%- if ns.is_first_sp %}{% set ns.system_prompt = ns.system_prompt + "
      "message['content'] %}{% set ns.is_first_sp = false %}{%- else %}"
      "{% set ns.system_prompt = ns.system_prompt + '\n\n' + message['content'] %}"
      "{%- endif %}{%- endif %}{%- endfor %}{{bos_token}}{{ns.system_prompt}}"
      "{%- for message in messages %}{%- if message['role'] == 'user' %}"
      "{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endif %}"
      "{%- if message['role'] == 'assistant' and message['content'] is none %}"
      "{%- set ns.is_tool = false -%}{%- for tool in message['tool_calls']%}"
      "{%- if not ns.is_first %}{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + "
      "tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + "
      "tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}"
      "{%- set ns.is_first = true -%}{%- else %}{{'\n' + '<｜tool▁call▁begin｜>' + "
      "tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + "
      "tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}"
      "{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor %}{%- endif %}"
      "{%- if message['role'] == 'assistant' and message['content'] is not none %}"
      "{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + message['content'] + "
      "'<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}{%- else %}{{'<｜Assistant｜>' + "
      "message['content'] + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}"
      "{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}"
      "{%- if ns.is_output_first %}{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + "
      "message['content'] + '<｜tool▁output▁end｜>'}}{%- set ns.is_output_first = false %}"
      "{%- else %}{{'\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}"
      "{%- endif %}{%- endif %}{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}"
      "{% endif %}{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜>'}}"
      "{% endif %}";
  return chat_template;
}

std::vector<ChatMessage> chat_messages_from_json(const nlohmann::json& j, const std::string& where) {
  const char* layout = ": expected [{\"role\": \"user\", \"content\": \"...\"}, ...]";
  DSV3_CHECK(j.is_array() && !j.empty(), "[chat] ", where, " holds no messages", layout);
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < j.size(); ++i) {
    const nlohmann::json& m = j[i];
    DSV3_CHECK(m.is_object() && m.contains("role") && m["role"].is_string() && m.contains("content") &&
                   m["content"].is_string(),
               "[chat] ", where, ": message ", i, " has no string \"role\" and \"content\"", layout);
    messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
    check_role(messages.back(), i);
  }
  return messages;
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
  return chat_messages_from_json(j, path);
}

}  // namespace dsv3
