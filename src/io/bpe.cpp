#include "io/bpe.h"

#include <algorithm>
#include <bit>
#include <functional>
#include <mutex>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/utf8.h"

namespace dsv3 {

namespace {

struct ByteAlphabet {
  std::array<uint32_t, 256> to_code_point{};
  std::array<int16_t, 324> to_byte{};  // code points 0..323 -> byte, -1 outside the alphabet
  std::array<std::string, 256> spelling{};
  ByteAlphabet() {
    to_byte.fill(-1);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      to_code_point[b] = printable ? uint32_t(b) : next++;
      to_byte[to_code_point[b]] = int16_t(b);
      append_utf8(to_code_point[b], spelling[b]);
    }
  }
};

const ByteAlphabet& alphabet() {
  static const ByteAlphabet a;
  return a;
}

uint64_t pair_key(int32_t left, int32_t right) { return (uint64_t(uint32_t(left)) << 32) | uint32_t(right); }

}  // namespace

uint32_t byte_level_code_point(uint8_t byte) { return alphabet().to_code_point[byte]; }

std::string bytes_to_byte_level(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += alphabet().spelling[uint8_t(c)];
  return out;
}

bool byte_level_to_bytes(std::string_view token, std::string& out) {
  const auto* p = reinterpret_cast<const uint8_t*>(token.data());
  std::string bytes;
  bytes.reserve(token.size());
  for (size_t i = 0; i < token.size();) {
    const Utf8Step step = utf8_step(p + i, token.size() - i);
    if (step.status != Utf8Status::valid || step.code_point >= alphabet().to_byte.size()) return false;
    const int16_t b = alphabet().to_byte[step.code_point];
    if (b < 0) return false;
    bytes += char(b);
    i += step.length;
  }
  out += bytes;
  return true;
}

// Open-addressing hash table (pair of ids) -> (rank, merged id): the hot lookup of BPE.
struct BpeModel::MergeTable {
  struct Slot {
    uint64_t key = ~uint64_t(0);  // empty
    int32_t rank = 0;
    int32_t merged = 0;
  };
  std::vector<Slot> slots;
  int shift = 64;
  size_t count = 0;

  explicit MergeTable(size_t expected) {
    size_t capacity = 16;
    while (capacity < expected * 2) capacity *= 2;
    slots.resize(capacity);
    shift = 64 - std::countr_zero(capacity);
  }
  size_t home(uint64_t key) const { return size_t((key * 0x9E3779B97F4A7C15ull) >> shift); }
  void put(uint64_t key, int32_t rank, int32_t merged) {
    const size_t mask = slots.size() - 1;
    for (size_t i = home(key);; i = (i + 1) & mask) {
      if (slots[i].key == key || slots[i].key == ~uint64_t(0)) {
        if (slots[i].key != key) ++count;
        slots[i] = {key, rank, merged};
        return;
      }
    }
  }
  const Slot* get(uint64_t key) const {
    const size_t mask = slots.size() - 1;
    for (size_t i = home(key);; i = (i + 1) & mask) {
      if (slots[i].key == key) return &slots[i];
      if (slots[i].key == ~uint64_t(0)) return nullptr;
    }
  }
};

// Pre-token -> ids. Words repeat heavily in real text, so this skips most merging work. Cleared
// when full rather than evicting one by one (cheap, and keeps the table bounded).
struct BpeModel::Cache {
  static constexpr size_t kMaxEntries = 1 << 17;
  static constexpr size_t kMaxWordBytes = 256;
  std::mutex mutex;
  std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> words;
};

BpeModel::BpeModel() : cache_(std::make_unique<Cache>()) {}
BpeModel::~BpeModel() = default;
BpeModel::BpeModel(BpeModel&&) noexcept = default;
BpeModel& BpeModel::operator=(BpeModel&&) noexcept = default;

size_t BpeModel::num_merges() const { return merges_ ? merges_->count : 0; }

BpeModel BpeModel::from_json(const nlohmann::json& model, const std::string& where) {
  DSV3_CHECK(model.is_object(), "[tokenizer] ", where, ": \"model\" is missing or not an object");
  const std::string type = model.value("type", std::string("BPE"));
  DSV3_CHECK(type == "BPE", "[tokenizer] ", where, ": model type '", type,
             "' is not supported (only byte-level \"BPE\")");
  auto is_unset = [&](const char* key) {
    return !model.contains(key) || model[key].is_null() || (model[key].is_string() && model[key] == "");
  };
  DSV3_CHECK(is_unset("continuing_subword_prefix") && is_unset("end_of_word_suffix"), "[tokenizer] ", where,
             ": BPE continuing_subword_prefix / end_of_word_suffix are not supported");
  DSV3_CHECK(!model.contains("dropout") || model["dropout"].is_null() ||
                 (model["dropout"].is_number() && model["dropout"].get<double>() == 0.0),
             "[tokenizer] ", where, ": BPE dropout is not supported (it makes tokenization random)");
  DSV3_CHECK(!model.value("byte_fallback", false), "[tokenizer] ", where,
             ": BPE byte_fallback (SentencePiece-style <0xNN> tokens) is not supported; only byte-level BPE is");

  BpeModel bpe;
  bpe.where_ = where;
  bpe.fuse_unk_ = model.value("fuse_unk", false);
  bpe.ignore_merges_ = model.value("ignore_merges", false);
  DSV3_CHECK(model.contains("vocab") && model["vocab"].is_object(), "[tokenizer] ", where,
             ": model.vocab is missing or not an object");
  std::vector<bool> seen;
  for (const auto& [token, id_json] : model["vocab"].items()) {
    DSV3_CHECK(id_json.is_number_integer(), "[tokenizer] ", where, ": vocab entry '", token, "' has a non-integer id");
    const int64_t id = id_json.get<int64_t>();
    DSV3_CHECK(id >= 0 && id < (int64_t(1) << 30), "[tokenizer] ", where, ": vocab entry '", token, "' has id ", id,
               " outside [0, 2^30)");
    if (size_t(id) >= seen.size()) seen.resize(size_t(id) + 1, false);
    DSV3_CHECK(!seen[size_t(id)], "[tokenizer] ", where, ": vocab id ", id, " is used twice (again by '", token, "')");
    seen[size_t(id)] = true;
    bpe.vocab_.emplace(token, int32_t(id));
  }
  for (int b = 0; b < 256; ++b) {
    auto it = bpe.vocab_.find(alphabet().spelling[b]);
    bpe.byte_ids_[b] = it == bpe.vocab_.end() ? -1 : it->second;
  }
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    auto it = bpe.vocab_.find(model["unk_token"].get<std::string>());
    if (it != bpe.vocab_.end()) bpe.unk_id_ = it->second;
  }

  DSV3_CHECK(model.contains("merges") && model["merges"].is_array(), "[tokenizer] ", where,
             ": model.merges is missing or not an array");
  const nlohmann::json& merges = model["merges"];
  bpe.merges_ = std::make_unique<MergeTable>(merges.size());
  auto id_of = [&](const std::string& token, size_t rank, const char* side) {
    auto it = bpe.vocab_.find(token);
    DSV3_CHECK(it != bpe.vocab_.end(), "[tokenizer] ", where, ": merge #", rank, " has ", side, " part '", token,
               "', which is not in the vocab");
    return it->second;
  };
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const nlohmann::json& m = merges[rank];
    std::string left, right;
    if (m.is_string()) {  // "left right" (tokenizers < 0.20); byte-level tokens never contain ' '
      const std::string& s = m.get_ref<const std::string&>();
      const size_t space = s.find(' ');
      DSV3_CHECK(space != std::string::npos && s.find(' ', space + 1) == std::string::npos, "[tokenizer] ", where,
                 ": merge #", rank, " '", s, "' is not two tokens separated by one space");
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {  // ["left", "right"]
      left = m[0].get<std::string>();
      right = m[1].get<std::string>();
    } else {
      DSV3_FAIL("[tokenizer] ", where, ": merge #", rank, " is neither \"a b\" nor [\"a\", \"b\"]: ",
                m.dump().substr(0, 100));
    }
    const int32_t left_id = id_of(left, rank, "left"), right_id = id_of(right, rank, "right");
    const int32_t merged_id = id_of(left + right, rank, "merged");
    // A repeated pair keeps its last rank, as HF tokenizers' map construction does.
    bpe.merges_->put(pair_key(left_id, right_id), int32_t(rank), merged_id);
  }
  return bpe;
}

void BpeModel::merge_word(std::string_view bytes, std::vector<int32_t>& out) const {
  struct Symbol {
    int32_t id, prev, next;
    bool alive;
  };
  struct Candidate {
    int32_t rank, pos, left, right, merged;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<Candidate> heap;
  const int32_t n = int32_t(bytes.size());
  symbols.resize(size_t(n));
  heap.clear();
  for (int32_t i = 0; i < n; ++i) symbols[size_t(i)] = {byte_ids_[uint8_t(bytes[size_t(i)])], i - 1, i + 1 < n ? i + 1 : -1, true};

  auto consider = [&](int32_t pos) {  // queue the pair starting at symbol pos, if it is a merge
    const int32_t next = symbols[size_t(pos)].next;
    if (next < 0) return;
    const int32_t left = symbols[size_t(pos)].id, right = symbols[size_t(next)].id;
    if (left < 0 || right < 0) return;
    if (const MergeTable::Slot* m = merges_->get(pair_key(left, right))) {
      heap.push_back({m->rank, pos, left, right, m->merged});
      std::push_heap(heap.begin(), heap.end(), std::greater<>());
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    const Candidate c = heap.back();
    heap.pop_back();
    Symbol& s = symbols[size_t(c.pos)];
    if (!s.alive || s.next < 0) continue;
    Symbol& right = symbols[size_t(s.next)];
    if (s.id != c.left || right.id != c.right) continue;  // stale: a neighbour merged first
    s.id = c.merged;
    right.alive = false;
    s.next = right.next;
    if (s.next >= 0) symbols[size_t(s.next)].prev = c.pos;
    if (s.prev >= 0) consider(s.prev);
    consider(c.pos);
  }

  bool previous_unk = false;
  for (int32_t i = 0; i >= 0 && i < n; i = symbols[size_t(i)].next) {
    const int32_t id = symbols[size_t(i)].id;
    if (id >= 0) {
      out.push_back(id);
      previous_unk = false;
      continue;
    }
    DSV3_CHECK(unk_id_ >= 0, "[tokenizer] ", where_, ": byte 0x", std::hex, int(uint8_t(bytes[size_t(i)])),
               " has no token in the vocab and the model has no unk_token; the vocab is not a complete byte-level one");
    if (!(fuse_unk_ && previous_unk)) out.push_back(unk_id_);
    previous_unk = true;
  }
}

void BpeModel::encode_piece(std::string_view bytes, std::vector<int32_t>& out) const {
  if (bytes.empty()) return;
  if (bytes.size() == 1 && byte_ids_[uint8_t(bytes[0])] >= 0) {
    out.push_back(byte_ids_[uint8_t(bytes[0])]);
    return;
  }
  if (ignore_merges_) {
    auto it = vocab_.find(bytes_to_byte_level(bytes));
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const bool cacheable = bytes.size() <= Cache::kMaxWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_->mutex);
    auto it = cache_->words.find(bytes);
    if (it != cache_->words.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = out.size();
  merge_word(bytes, out);
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_->mutex);
    if (cache_->words.size() >= Cache::kMaxEntries) cache_->words.clear();
    cache_->words.emplace(std::string(bytes), std::vector<int32_t>(out.begin() + int64_t(first), out.end()));
  }
}

}  // namespace dsv3
