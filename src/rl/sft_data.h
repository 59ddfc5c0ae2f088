// Chat conversations as training data for supervised fine-tuning (`dsv3 sft`): a JSONL file, one
// conversation per line as {"messages": [{"role": ..., "content": ...}, ...]} (OpenAI's layout; `dsv3
// tasks --with-solutions` writes such lines), rendered with DeepSeek's chat template and packed into the
// trainer's sequences (train/training_data.h).
//
// Examples: every assistant turn of a conversation is one example — the conversation before it rendered
// as the prompt of that turn (encode_chat with the generation prompt, so R1's "<think>\n" is part of the
// prompt, and earlier R1 turns keep only their answers, as the template renders them at inference), then
// the turn's content (after R1's opening "<think>\n", which the prompt already holds) and EOS. Only the
// reply's tokens count in the loss. The reply is encoded with its control tokens ("</think>") as the
// model emits them.
//
// Packing: each epoch visits the train examples in a shuffled order (a pure function of the seed and
// the epoch) and packs them greedily into sequences of seq + 1 tokens, an example that does not fit the
// rest of a sequence starting the next one; an example longer than a sequence is cut to it. Every
// example is a document of its own (attention stays inside it, RoPE restarts), the padding after the
// last one too, with no loss. Batch i is sequences [i·batch, (i+1)·batch) of the epochs in turn.
//
// Split: a conversation is validation when an FNV-1a hash of its line falls in the lowest twentieth
// (5%), so the split does not depend on the file's order; validation examples are packed in file order.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "infer/chat_format.h"
#include "io/tokenizer.h"
#include "train/training_data.h"

namespace dsv3 {

struct SftExample {
  std::vector<int32_t> ids;
  std::vector<uint8_t> counts;  // 1 where predicting the token counts in the loss (the reply and EOS)
};

// The examples of one conversation (one per assistant turn).
std::vector<SftExample> render_sft_examples(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                                            ChatTemplate chat_template);

// TrainingData::format() of chat data rendered with `chat_template`: "chat-jsonl:<template name>".
std::string sft_data_format(ChatTemplate chat_template);

// Opens `path` with the tokenizer.json at `tokenizer` for the template `format` names. Prints a summary
// (conversations, examples, tokens, cut examples) to stderr.
std::unique_ptr<TrainingData> open_sft_data(const std::string& format, const std::string& path,
                                            const std::string& tokenizer);

}  // namespace dsv3
