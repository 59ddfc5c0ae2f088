// DeepSeek's chat formats, as the Jinja chat_template in a model's tokenizer_config.json renders plain
// system / user / assistant messages (no tools). Two templates are known:
//
// deepseek-v3 (DeepSeek-V3):
//   <｜begin▁of▁sentence｜>{system prompts joined by "\n\n"}
//   then per message: user      -> <｜User｜>{content}
//                     assistant -> <｜Assistant｜>{content}<｜end▁of▁sentence｜>
//   and <｜Assistant｜> at the end when a generation prompt is asked for.
// deepseek-r1 (DeepSeek-R1): the same, except that
//   - an assistant message keeps only what follows its last "</think>" (earlier turns' reasoning is
//     dropped from the history; a message without "</think>" is kept whole), and
//   - the generation prompt is <｜Assistant｜><think>\n, so the reply starts inside its reasoning.
// System messages contribute only to the prompt after BOS, wherever they appear.
//
// Picking the template for a model directory (what dsv3 chat / generate do):
//   const Tokenizer tok = Tokenizer::from_file(dir + "/tokenizer.json");  // reads tokenizer_config.json
//   const ChatTemplate tmpl = detect_chat_template(tok.chat_template());  // or parse_chat_template(flag)
//   const std::vector<int32_t> prompt = encode_chat(tok, messages, /*add_generation_prompt=*/true, tmpl);
// The reply is then split into reasoning and content by ReasoningSplitter (infer/reasoning.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace dsv3 {

class Tokenizer;

enum class ChatTemplate { deepseek_v3, deepseek_r1 };

// "deepseek-v3" / "deepseek-r1" (the names dsv3's --chat-template takes); anything else is an error
// listing both.
ChatTemplate parse_chat_template(std::string_view name);
const char* chat_template_name(ChatTemplate chat_template);

// Which of the two a tokenizer_config.json chat_template (Jinja source) is. R1's is recognised by its
// two R1-only parts: the generation prompt "<think>" followed by a newline (written as the Jinja escape
// \n or as a newline character), and the "</think>" on which it splits assistant messages. A template
// holding both is deepseek-r1; one holding <｜User｜> and <｜Assistant｜> and no "</think>" is
// deepseek-v3. Anything else (no template, another model's, a reasoning template that does not open
// <think> in its generation prompt) falls back to deepseek-v3 with a note on stderr saying why and how
// to choose.
ChatTemplate detect_chat_template(std::string_view jinja_template);

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"; anything else is an error
  std::string content;
};

// The conversation as text with the special tokens spelled out; encode it with allow_special=true.
std::string format_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                        ChatTemplate chat_template = ChatTemplate::deepseek_v3);

// The same conversation as ids, with message contents encoded with allow_special=false, so text
// like "<｜Assistant｜>" or "<think>" typed by a user stays ordinary text; only the template's own text
// (role markers, R1's <think>) becomes control tokens. Equals tokenizer.encode(format_chat(...))
// whenever no content contains an added token's text.
std::vector<int32_t> encode_chat(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt, ChatTemplate chat_template = ChatTemplate::deepseek_v3);

// The added tokens of DeepSeek's chat format besides BOS, EOS and pad, in the order of their ids in
// DeepSeek's tokenizer.json: <think> and </think> (DeepSeek-R1 and V3.1's reasoning markers), the role
// markers <｜User｜> and <｜Assistant｜>, and the tool-call markers its chat template writes. None is
// special there (normalized, kept by decode(skip_special=true)); dsv3 train-tokenizer adds them so.
const std::vector<std::string>& deepseek_chat_tokens();

// DeepSeek-V3's chat_template, as its tokenizer_config.json holds it: Jinja that renders plain
// messages as format_chat does (and tool calls with the tool markers), for tokenizer_config.json files
// that Hugging Face's apply_chat_template reads.
const std::string& deepseek_chat_template();

// A conversation stored as JSON: [{"role": "user", "content": "..."}, ...] (OpenAI's and Hugging Face's
// messages layout). Errors name the file and the entry.
std::vector<ChatMessage> read_chat_messages(const std::string& path);
// The same from parsed JSON; `where` names it in errors (a file, a line of a file).
std::vector<ChatMessage> chat_messages_from_json(const nlohmann::json& messages, const std::string& where);

}  // namespace dsv3
