#include "rl/sft_data.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <tuple>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/hash.h"

namespace dsv3 {

std::vector<SftExample> render_sft_examples(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                                            ChatTemplate chat_template) {
  const std::optional<int32_t> eos = tokenizer.eos_id();
  DSV3_CHECK(eos.has_value(), "[sft] the tokenizer ", tokenizer.name(), " has no end-of-sentence token");
  std::vector<SftExample> examples;
  for (size_t j = 0; j < messages.size(); ++j) {
    if (messages[j].role != "assistant") continue;
    const std::vector<ChatMessage> before(messages.begin(), messages.begin() + std::ptrdiff_t(j));
    SftExample e;
    e.ids = encode_chat(tokenizer, before, /*add_generation_prompt=*/true, chat_template);
    e.counts.assign(e.ids.size(), 0);
    std::string_view reply = messages[j].content;
    if (chat_template == ChatTemplate::deepseek_r1) {  // the prompt already opened the reasoning
      if (reply.substr(0, 8) == "<think>\n")
        reply.remove_prefix(8);
      else if (reply.substr(0, 7) == "<think>")
        reply.remove_prefix(7);
    }
    std::vector<int32_t> ids = tokenizer.encode(reply, /*allow_special=*/true);
    ids.push_back(*eos);
    e.ids.insert(e.ids.end(), ids.begin(), ids.end());
    e.counts.resize(e.ids.size(), 1);
    examples.push_back(std::move(e));
  }
  return examples;
}

std::string sft_data_format(ChatTemplate chat_template) {
  return cat("chat-jsonl:", chat_template_name(chat_template));
}

namespace {

class SftData final : public TrainingData {
 public:
  SftData(std::string format, std::string path, std::string tokenizer, int64_t vocab)
      : format_(std::move(format)), path_(std::move(path)), tokenizer_(std::move(tokenizer)), vocab_(vocab) {}

  std::vector<SftExample> train, val;

  std::string format() const override { return format_; }
  std::string path() const override { return path_; }
  int64_t vocab_size() const override { return vocab_; }
  std::string tokenizer_path() const override { return tokenizer_; }
  void check_fits(int64_t seq) const override {
    DSV3_CHECK(!train.empty(), "[sft] ", path_, " has no training example (an assistant turn outside the 5% "
               "validation split)");
    (void)seq;  // longer examples are cut to the sequence
  }

  void train_batch(int64_t index, int64_t batch, int64_t seq, uint64_t seed, TrainBatch& out) const override {
    start(out, batch, seq);
    for (int64_t r = 0; r < batch; ++r) fill_row(train, train_row(index * batch + r, seq, seed), seq, r, out);
  }
  int64_t val_sequences(int64_t seq) const override { return int64_t(val_rows(seq).size()); }
  void val_batch(int64_t first, int64_t batch, int64_t seq, TrainBatch& out) const override {
    const std::vector<std::vector<int64_t>>& rows = val_rows(seq);
    DSV3_CHECK(first + batch <= int64_t(rows.size()), "[sft] validation sequences ", first, "..", first + batch,
               " of ", rows.size());
    start(out, batch, seq);
    for (int64_t r = 0; r < batch; ++r) fill_row(val, rows[size_t(first + r)], seq, r, out);
  }

 private:
  using Rows = std::vector<std::vector<int64_t>>;  // per sequence: the examples packed in it

  static Rows pack(const std::vector<SftExample>& examples, const std::vector<int64_t>& order, int64_t seq) {
    Rows rows;
    int64_t room = 0;
    for (int64_t e : order) {
      const int64_t n = std::min<int64_t>(int64_t(examples[size_t(e)].ids.size()), seq + 1);
      if (rows.empty() || n > room) {
        rows.emplace_back();
        room = seq + 1;
      }
      rows.back().push_back(e);
      room -= n;
    }
    return rows;
  }
  // Epoch `epoch`'s shuffled packing, cached (the trainer asks for the epochs in turn).
  const Rows& epoch_rows(int64_t epoch, int64_t seq, uint64_t seed) const {
    auto key = std::make_tuple(epoch, seq, seed);
    auto it = epochs_.find(key);
    if (it != epochs_.end()) return it->second;
    std::vector<int64_t> order(train.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = int64_t(i);
    SplitMix64 rng(splitmix64(seed) ^ uint64_t(epoch));
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[size_t(rng.below(i))]);
    return epochs_[key] = pack(train, order, seq);
  }
  const std::vector<int64_t>& train_row(int64_t global, int64_t seq, uint64_t seed) const {
    for (int64_t epoch = 0;; ++epoch) {
      const Rows& rows = epoch_rows(epoch, seq, seed);
      if (global < int64_t(rows.size())) return rows[size_t(global)];
      global -= int64_t(rows.size());
    }
  }
  const Rows& val_rows(int64_t seq) const {
    auto it = val_rows_.find(seq);
    if (it != val_rows_.end()) return it->second;
    std::vector<int64_t> order(val.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = int64_t(i);
    return val_rows_[seq] = pack(val, order, seq);
  }
  static void start(TrainBatch& out, int64_t batch, int64_t seq) {
    const size_t n = size_t(batch * (seq + 1));
    out.tokens.assign(n, 0);
    out.document_start.assign(n, 0);
    out.loss_mask.assign(n, 0);
  }
  // Row r: the examples one after another, each its own document, then padding as a last document.
  void fill_row(const std::vector<SftExample>& examples, const std::vector<int64_t>& row, int64_t seq, int64_t r,
                TrainBatch& out) const {
    const int64_t base = r * (seq + 1);
    int64_t at = 0;
    for (int64_t e : row) {
      const SftExample& ex = examples[size_t(e)];
      const int64_t n = std::min<int64_t>(int64_t(ex.ids.size()), seq + 1 - at);
      for (int64_t i = 0; i < n; ++i) {
        out.tokens[size_t(base + at + i)] = ex.ids[size_t(i)];
        out.loss_mask[size_t(base + at + i)] = ex.counts[size_t(i)];
        out.document_start[size_t(base + at + i)] = int32_t(at);
      }
      at += n;
    }
    for (int64_t i = at; i <= seq; ++i) out.document_start[size_t(base + i)] = int32_t(at);
  }

  std::string format_, path_, tokenizer_;
  int64_t vocab_ = 0;
  mutable std::map<std::tuple<int64_t, int64_t, uint64_t>, Rows> epochs_;
  mutable std::map<int64_t, Rows> val_rows_;
};

}  // namespace

std::unique_ptr<TrainingData> open_sft_data(const std::string& format, const std::string& path,
                                            const std::string& tokenizer_path) {
  const std::string prefix = "chat-jsonl:";
  DSV3_CHECK(format.rfind(prefix, 0) == 0, "[sft] ", path, " holds ", format, " data, not chat conversations",
             format == "token-shards" ? ": continue the run with dsv3 train --resume" : "");
  const ChatTemplate chat_template = parse_chat_template(format.substr(prefix.size()));
  DSV3_CHECK(!tokenizer_path.empty(), "[sft] no tokenizer to render ", path, " with: the model directory needs a "
             "tokenizer.json (or give --tokenizer)");
  const Tokenizer tokenizer = Tokenizer::from_file(tokenizer_path);
  std::ifstream in(path, std::ios::binary);
  DSV3_CHECK(in.good(), "[sft] cannot open ", path, ": give a JSONL file with one {\"messages\": [...]} per line");
  auto data = std::make_unique<SftData>(format, path, tokenizer_path, tokenizer.vocab_size());
  std::string line;
  int64_t number = 0, conversations = 0, tokens = 0, longest = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = cat(path, ":", number);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      DSV3_FAIL("[sft] ", where, " is not valid JSON (", e.what(), ")");
    }
    DSV3_CHECK(j.is_object() && j.contains("messages"), "[sft] ", where, " has no \"messages\": each line is "
               "{\"messages\": [{\"role\": \"user\", \"content\": \"...\"}, {\"role\": \"assistant\", ...}]}");
    const std::vector<SftExample> examples =
        render_sft_examples(tokenizer, chat_messages_from_json(j["messages"], where), chat_template);
    DSV3_CHECK(!examples.empty(), "[sft] ", where, " has no assistant message to learn from");
    std::vector<SftExample>& split = fnv1a64(line) % 20 == 0 ? data->val : data->train;
    for (const SftExample& e : examples) {
      tokens += int64_t(e.ids.size());
      longest = std::max<int64_t>(longest, int64_t(e.ids.size()));
      split.push_back(e);
    }
    ++conversations;
  }
  DSV3_CHECK(conversations > 0, "[sft] ", path, " holds no conversation");
  std::fprintf(stderr, "[sft] %s: %lld conversations, %zu train and %zu validation examples, %lld tokens (longest "
               "%lld), template %s\n",
               path.c_str(), (long long)conversations, data->train.size(), data->val.size(), (long long)tokens,
               (long long)longest, chat_template_name(chat_template));
  return data;
}

}  // namespace dsv3
