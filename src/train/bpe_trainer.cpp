#include "train/bpe_trainer.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "infer/chat_format.h"
#include "io/bpe.h"
#include "io/pre_tokenizer.h"
#include "io/utf8.h"

namespace dsv3 {

namespace {

using WordCounts = std::unordered_map<std::string, int64_t, StringHash, std::equal_to<>>;

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Texts are counted in chunks of about this size, cut only where cutting cannot change the
// pre-tokens (see safe_cut), so one big file still spreads over all threads.
constexpr size_t kChunkBytes = size_t(1) << 20;

// A cut right after a newline that is followed by a character other than whitespace leaves every
// pre-token whole: in the DeepSeek-V3 pattern only `\s*[\r\n]+` (and `[\r\n]*` after punctuation)
// may contain a newline, and those end before the next non-whitespace character; no piece that
// starts there may begin with a newline.
size_t safe_cut(std::string_view text, size_t from) {
  for (size_t i = std::max<size_t>(from, 1); i < text.size(); ++i) {
    const char c = text[i];
    if (text[i - 1] == '\n' && c != '\n' && c != '\r' && c != ' ' && c != '\t' && c != '\v' && c != '\f' &&
        uint8_t(c) < 0x80)
      return i;
  }
  return text.size();
}

// Pair of adjacent symbol ids packed in one key.
uint64_t pair_key(int32_t left, int32_t right) { return (uint64_t(uint32_t(left)) << 32) | uint32_t(right); }
int32_t pair_left(uint64_t key) { return int32_t(key >> 32); }
int32_t pair_right(uint64_t key) { return int32_t(key & 0xFFFFFFFFu); }

struct HeapEntry {
  int64_t count;
  uint64_t pair;
  // std::priority_queue pops the "largest": the highest count, then the smallest (left, right).
  bool operator<(const HeapEntry& other) const {
    if (count != other.count) return count < other.count;
    return pair > other.pair;
  }
};

struct Word {
  std::vector<int32_t> symbols;
  int64_t count;
};

// Whether `added` holds every DeepSeek token that DeepSeek's chat template writes (EOS, role and tool
// markers; BOS comes from tokenizer_config.json's bos_token).
bool holds_template_tokens(const std::vector<std::string>& added) {
  const std::string& chat_template = deepseek_chat_template();
  std::vector<std::string> deepseek = deepseek_chat_tokens();
  deepseek.push_back(default_special_tokens()[1]);  // <｜end▁of▁sentence｜>
  for (const std::string& token : deepseek) {
    if (chat_template.find(token) != std::string::npos && std::find(added.begin(), added.end(), token) == added.end())
      return false;
  }
  return true;
}

}  // namespace

std::vector<std::string> default_chat_tokens() { return deepseek_chat_tokens(); }

std::vector<std::string> default_special_tokens() {
  return {"<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"};
}

nlohmann::json bpe_trainer_pre_tokenizer_json() {
  // DeepSeek-V3's pre-tokenizer: numbers in groups of up to three digits; runs of CJK ideographs and
  // kana (U+4E00-9FA5, U+3040-30FF); then words with at most one leading non-letter (space) or one
  // ASCII punctuation mark, punctuation runs with a leading space and trailing newlines, newline
  // runs with the spaces before them, and other whitespace. ByteLevel only maps bytes (no regex).
  auto split = [](const char* regex) {
    return nlohmann::json{{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"},
                          {"invert", false}};
  };
  nlohmann::json steps = nlohmann::json::array();
  steps.push_back(split("\\p{N}{1,3}"));
  steps.push_back(split("[\u4E00-\u9FA5\u3040-\u309F\u30A0-\u30FF]+"));
  steps.push_back(split("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
                        " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"));
  steps.push_back(
      {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}});
  return {{"type", "Sequence"}, {"pretokenizers", steps}};
}

struct BpeTrainer::Counts {
  PreTokenizer pre_tokenizer;
  WordCounts words;
  int64_t text_bytes = 0;
  int64_t pre_tokens = 0;
  double seconds = 0;
};

BpeTrainer::BpeTrainer(BpeTrainerOptions options) : options_(std::move(options)), counts_(std::make_unique<Counts>()) {
  added_tokens_ = options_.special_tokens;
  added_tokens_.insert(added_tokens_.end(), options_.chat_tokens.begin(), options_.chat_tokens.end());
  const int64_t k = int64_t(added_tokens_.size());
  DSV3_CHECK(options_.vocab_size >= 256 + k, "[train-tokenizer] vocab size ", options_.vocab_size,
             " is too small: it must hold the ", k, " special and chat tokens and the 256 byte tokens (at least ",
             256 + k, ")");
  DSV3_CHECK(options_.vocab_size <= (int64_t(1) << 30), "[train-tokenizer] vocab size ", options_.vocab_size,
             " is too large (at most 2^30)");
  DSV3_CHECK(options_.min_frequency >= 0, "[train-tokenizer] min frequency must be >= 0, got ",
             options_.min_frequency);
  std::unordered_set<std::string> seen;
  for (const std::string& s : added_tokens_) {
    DSV3_CHECK(!s.empty(), "[train-tokenizer] a special token is empty");
    DSV3_CHECK(is_valid_utf8(s), "[train-tokenizer] special token '", s, "' is not valid UTF-8");
    DSV3_CHECK(seen.insert(s).second, "[train-tokenizer] special token '", s, "' is given twice");
  }
  counts_->pre_tokenizer = PreTokenizer::from_json(bpe_trainer_pre_tokenizer_json(), "trained tokenizer");
}

BpeTrainer::~BpeTrainer() = default;
BpeTrainer::BpeTrainer(BpeTrainer&&) noexcept = default;
BpeTrainer& BpeTrainer::operator=(BpeTrainer&&) noexcept = default;

void BpeTrainer::add_text(std::string_view text) { add_texts({std::string(text)}); }

void BpeTrainer::add_texts(const std::vector<std::string>& texts) {
  const auto start = std::chrono::steady_clock::now();
  // Cut the texts into chunks: first around special-token occurrences (whose text is not learned
  // from), then at safe newlines every ~kChunkBytes.
  std::vector<std::string_view> chunks;
  std::vector<std::string> repaired;  // texts with invalid UTF-8, repaired as the Tokenizer does
  repaired.reserve(texts.size());
  int64_t total_bytes = 0;
  for (const std::string& original : texts) {
    std::string_view text = original;
    if (!is_valid_utf8(text)) {
      repaired.push_back(utf8_lossy(text));
      text = repaired.back();
    }
    total_bytes += int64_t(text.size());
    // next[k]: the next occurrence of special token k at or after pos (npos: none), kept across
    // iterations so a text with many special tokens is scanned once per token kind.
    std::vector<size_t> next;
    for (const std::string& s : added_tokens_) next.push_back(text.find(s));
    size_t pos = 0;
    while (pos < text.size()) {
      size_t special_begin = text.size(), special_end = text.size();
      for (size_t k = 0; k < next.size(); ++k) {
        const std::string& s = added_tokens_[k];
        if (next[k] != std::string_view::npos && next[k] < pos) next[k] = text.find(s, pos);
        const size_t at = next[k];
        if (at == std::string_view::npos) continue;
        if (at < special_begin || (at == special_begin && at + s.size() > special_end)) {
          special_begin = at;
          special_end = at + s.size();
        }
      }
      while (pos < special_begin) {
        const size_t cut = std::min(special_begin, safe_cut(text.substr(0, special_begin), pos + kChunkBytes));
        chunks.push_back(text.substr(pos, cut - pos));
        pos = cut;
      }
      pos = special_end;
    }
  }

  ProgressBar progress("counting words", total_bytes, "bytes", options_.show_progress);
  std::mutex merge_mutex;
  int64_t pre_tokens = 0;
  parallel_for(int64_t(chunks.size()), 1, [&](int64_t begin, int64_t end) {
    WordCounts local;
    int64_t local_pre_tokens = 0;
    for (int64_t c = begin; c < end; ++c) {
      counts_->pre_tokenizer.split(chunks[size_t(c)], [&](std::string_view piece) {
        ++local_pre_tokens;
        auto it = local.find(piece);
        if (it == local.end()) local.emplace(std::string(piece), 1);
        else ++it->second;
      });
      progress.add(int64_t(chunks[size_t(c)].size()));
    }
    std::lock_guard<std::mutex> lock(merge_mutex);
    for (auto& [word, count] : local) counts_->words[word] += count;
    pre_tokens += local_pre_tokens;
  });
  progress.set_note(format_count(double(pre_tokens)) + " pre-tokens, " +
                    format_count(double(counts_->words.size())) + " distinct");
  progress.finish();
  counts_->text_bytes += total_bytes;
  counts_->pre_tokens += pre_tokens;
  counts_->seconds += seconds_since(start);
}

TrainedTokenizer BpeTrainer::train() const {
  const auto start = std::chrono::steady_clock::now();
  const int32_t n_special = int32_t(options_.special_tokens.size());
  const int32_t n_added = int32_t(added_tokens_.size());

  // Ids: added tokens (special, then chat), then the 256 bytes ordered by their byte-level code point,
  // then merges.
  std::vector<std::string> token_bytes;  // id -> raw bytes (added tokens: their content)
  for (const std::string& s : added_tokens_) token_bytes.push_back(s);
  std::array<int32_t, 256> byte_id{};
  {
    std::vector<int> order(256);
    for (int b = 0; b < 256; ++b) order[size_t(b)] = b;
    std::sort(order.begin(), order.end(),
              [](int a, int b) { return byte_level_code_point(uint8_t(a)) < byte_level_code_point(uint8_t(b)); });
    for (int b : order) {
      byte_id[size_t(b)] = int32_t(token_bytes.size());
      token_bytes.push_back(std::string(1, char(b)));
    }
  }
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> id_of_bytes;  // learned tokens and bytes
  for (int b = 0; b < 256; ++b) id_of_bytes.emplace(std::string(1, char(b)), byte_id[size_t(b)]);

  // Distinct words in byte order, so ids and tie-breaks never depend on hash-map iteration order.
  std::vector<const std::pair<const std::string, int64_t>*> sorted;
  sorted.reserve(counts_->words.size());
  for (const auto& entry : counts_->words) sorted.push_back(&entry);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->first < b->first; });
  std::vector<Word> words;
  words.reserve(sorted.size());
  for (const auto* entry : sorted) {
    Word w;
    w.count = entry->second;
    w.symbols.reserve(entry->first.size());
    for (char c : entry->first) w.symbols.push_back(byte_id[uint8_t(c)]);
    words.push_back(std::move(w));
  }

  std::unordered_map<uint64_t, int64_t> pair_count;
  std::unordered_map<uint64_t, std::vector<int32_t>> pair_words;  // words that may contain the pair
  for (size_t w = 0; w < words.size(); ++w) {
    const std::vector<int32_t>& s = words[w].symbols;
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      const uint64_t key = pair_key(s[i], s[i + 1]);
      pair_count[key] += words[w].count;
      std::vector<int32_t>& list = pair_words[key];
      if (list.empty() || list.back() != int32_t(w)) list.push_back(int32_t(w));
    }
  }
  std::vector<HeapEntry> initial;
  initial.reserve(pair_count.size());
  for (const auto& [key, count] : pair_count) initial.push_back({count, key});
  std::priority_queue<HeapEntry> heap(std::less<HeapEntry>(), std::move(initial));

  const int64_t target = options_.vocab_size;
  const int64_t min_count = std::max<int64_t>(options_.min_frequency, 1);
  std::vector<std::pair<int32_t, int32_t>> merges;
  ProgressBar progress("learning merges", target - int64_t(token_bytes.size()), "tokens", options_.show_progress);
  std::unordered_map<uint64_t, int64_t> delta;
  std::vector<int32_t> merged;
  while (int64_t(token_bytes.size()) < target && !heap.empty()) {
    const HeapEntry top = heap.top();
    heap.pop();
    auto found = pair_count.find(top.pair);
    const int64_t actual = found == pair_count.end() ? 0 : found->second;
    // Lazy deletion: an entry whose count is out of date is dropped; when the count fell, the pair
    // goes back with its current count (a count that rose was pushed when it rose).
    if (top.count != actual) {
      if (top.count > actual && actual > 0) heap.push({actual, top.pair});
      continue;
    }
    if (actual < min_count) break;  // the best remaining pair is too rare

    const int32_t left = pair_left(top.pair), right = pair_right(top.pair);
    std::string bytes = token_bytes[size_t(left)] + token_bytes[size_t(right)];
    int32_t new_id;
    if (auto it = id_of_bytes.find(bytes); it != id_of_bytes.end()) {
      new_id = it->second;  // the same string reached by another split keeps its id
    } else {
      new_id = int32_t(token_bytes.size());
      id_of_bytes.emplace(bytes, new_id);
      token_bytes.push_back(std::move(bytes));
      progress.add(1);
    }
    merges.emplace_back(left, right);

    // Merge every occurrence, left to right, in each word that may contain the pair; record how
    // the neighbouring pairs' counts change. For "x L R y": (x,L), (L,R), (R,y) lose one
    // occurrence, (x,N) and (N,y) gain one. For back-to-back occurrences the "x" of the second is
    // the N just made, which undoes the (N,L) gained by the first: the net effect is exact.
    std::vector<int32_t> affected = std::move(pair_words[top.pair]);
    pair_words.erase(top.pair);
    delta.clear();
    for (int32_t w : affected) {
      Word& word = words[size_t(w)];
      const std::vector<int32_t>& s = word.symbols;
      merged.clear();
      bool changed = false;
      for (size_t i = 0; i < s.size();) {
        if (i + 1 < s.size() && s[i] == left && s[i + 1] == right) {
          changed = true;
          delta[top.pair] -= word.count;
          if (!merged.empty()) {
            delta[pair_key(merged.back(), left)] -= word.count;
            delta[pair_key(merged.back(), new_id)] += word.count;
          }
          if (i + 2 < s.size()) {
            delta[pair_key(right, s[i + 2])] -= word.count;
            delta[pair_key(new_id, s[i + 2])] += word.count;
          }
          merged.push_back(new_id);
          i += 2;
        } else {
          merged.push_back(s[i]);
          ++i;
        }
      }
      if (!changed) continue;  // a stale entry of the list
      word.symbols.assign(merged.begin(), merged.end());
      for (size_t i = 0; i + 1 < merged.size(); ++i) {
        if (merged[i] != new_id && merged[i + 1] != new_id) continue;
        std::vector<int32_t>& list = pair_words[pair_key(merged[i], merged[i + 1])];
        if (list.empty() || list.back() != w) list.push_back(w);
      }
    }
    for (const auto& [key, change] : delta) {
      if (change == 0) continue;
      int64_t& count = pair_count[key];
      count += change;
      if (change > 0) heap.push({count, key});
      if (count == 0) pair_count.erase(key);
    }
  }
  progress.finish();

  // Assemble tokenizer.json.
  TrainedTokenizer out;
  BpeTrainingStats& stats = out.stats;
  stats.text_bytes = counts_->text_bytes;
  stats.pre_tokens = counts_->pre_tokens;
  stats.distinct_words = int64_t(counts_->words.size());
  stats.merges = int64_t(merges.size());
  stats.vocab_size = int64_t(token_bytes.size());
  stats.count_seconds = counts_->seconds;

  std::vector<std::string> spelling(token_bytes.size());
  std::unordered_set<std::string_view> added_spellings;
  for (int32_t id = 0; id < n_added; ++id) {
    spelling[size_t(id)] = token_bytes[size_t(id)];
    added_spellings.insert(spelling[size_t(id)]);
  }
  for (size_t id = size_t(n_added); id < token_bytes.size(); ++id) {
    spelling[id] = bytes_to_byte_level(token_bytes[id]);
    DSV3_CHECK(!added_spellings.count(spelling[id]), "[train-tokenizer] added token '", spelling[id],
               "' is spelled like the byte-level token of its own bytes or of other text; choose another name");
  }

  // DeepSeek's flags: special tokens special and not normalized, chat markers the other way round.
  nlohmann::ordered_json added = nlohmann::ordered_json::array();
  for (int32_t id = 0; id < n_added; ++id)
    added.push_back({{"id", id},
                     {"content", spelling[size_t(id)]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", id >= n_special},
                     {"special", id < n_special}});
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  for (size_t id = 0; id < spelling.size(); ++id) vocab[spelling[id]] = int64_t(id);
  nlohmann::ordered_json merge_list = nlohmann::ordered_json::array();
  for (const auto& [l, r] : merges) merge_list.push_back({spelling[size_t(l)], spelling[size_t(r)]});

  nlohmann::ordered_json model = {{"type", "BPE"},
                                  {"dropout", nullptr},
                                  {"unk_token", nullptr},
                                  {"continuing_subword_prefix", nullptr},
                                  {"end_of_word_suffix", nullptr},
                                  {"fuse_unk", false},
                                  {"byte_fallback", false},
                                  {"ignore_merges", false}};
  model["vocab"] = std::move(vocab);
  model["merges"] = std::move(merge_list);

  nlohmann::ordered_json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = std::move(added);
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = nlohmann::ordered_json::parse(bpe_trainer_pre_tokenizer_json().dump());
  j["post_processor"] = nullptr;
  j["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  j["model"] = std::move(model);
  out.tokenizer_json = j.dump(2) + "\n";

  // tokenizer_config.json: as DeepSeek's, a BOS starts every sequence (dsv3 data writes documents as
  // BOS text EOS); the tokenizer class is the one DeepSeek-V3 names.
  nlohmann::ordered_json config;
  config["add_bos_token"] = n_special >= 1;
  config["add_eos_token"] = false;
  if (n_special >= 1) config["bos_token"] = spelling[0];
  if (n_special >= 2) config["eos_token"] = spelling[1];
  if (n_special >= 3) config["pad_token"] = spelling[2];
  config["clean_up_tokenization_spaces"] = false;
  config["legacy"] = true;
  config["unk_token"] = nullptr;
  config["tokenizer_class"] = "LlamaTokenizerFast";
  if (holds_template_tokens(added_tokens_)) config["chat_template"] = deepseek_chat_template();
  out.tokenizer_config_json = config.dump(2) + "\n";

  stats.merge_seconds = seconds_since(start);
  return out;
}

void write_trained_tokenizer(const TrainedTokenizer& trained, const std::string& tokenizer_json_path) {
  namespace fs = std::filesystem;
  const fs::path path(tokenizer_json_path);
  if (path.has_parent_path()) {
    std::error_code ec;
    fs::create_directories(path.parent_path(), ec);
    DSV3_CHECK(!ec, "[train-tokenizer] cannot create directory ", path.parent_path().string(), ": ", ec.message());
  }
  auto write = [](const fs::path& p, const std::string& text) {
    const fs::path tmp = p.string() + ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      DSV3_CHECK(out.good(), "[train-tokenizer] cannot write ", tmp.string(), ": check the directory is writable");
      out.write(text.data(), std::streamsize(text.size()));
      out.close();
      DSV3_CHECK(out.good(), "[train-tokenizer] failed writing ", tmp.string(), " (disk full?)");
    }
    std::error_code ec;
    fs::rename(tmp, p, ec);
    DSV3_CHECK(!ec, "[train-tokenizer] cannot rename ", tmp.string(), " to ", p.string(), ": ", ec.message());
  };
  write(path, trained.tokenizer_json);
  write(path.parent_path() / "tokenizer_config.json", trained.tokenizer_config_json);
}

}  // namespace dsv3
