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

}  // namespace dsv3
