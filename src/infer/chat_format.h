// DeepSeek-V3's chat format, as the Jinja chat_template in its tokenizer_config.json renders plain
// system / user / assistant messages (no tools):
//   <｜begin▁of▁sentence｜>{system prompts joined by "\n\n"}
//   then per message: user      -> <｜User｜>{content}
//                     assistant -> <｜Assistant｜>{content}<｜end▁of▁sentence｜>
//   and <｜Assistant｜> at the end when a generation prompt is asked for.
// System messages contribute only to the prompt after BOS, wherever they appear.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsv3 {

class Tokenizer;

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"; anything else is an error
  std::string content;
};

// The conversation as text with the special tokens spelled out; encode it with allow_special=true.
std::string format_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt);

// The same conversation as ids, with message contents encoded with allow_special=false, so text
// like "<｜Assistant｜>" typed by a user stays ordinary text. Equals
// tokenizer.encode(format_chat(...)) whenever no content contains an added token's text.
std::vector<int32_t> encode_chat(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt);

// A conversation stored as JSON: [{"role": "user", "content": "..."}, ...] (OpenAI's and Hugging Face's
// messages layout). Errors name the file and the entry.
std::vector<ChatMessage> read_chat_messages(const std::string& path);

}  // namespace dsv3
