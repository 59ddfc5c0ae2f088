#include "train/token_shards.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/hash.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "io/tokenizer.h"

namespace dsv3 {

namespace {

namespace fs = std::filesystem;

// Uniform in [0, n) from 64 random bits (multiply-shift; the bias is below n / 2^64).
uint64_t below(uint64_t bits, uint64_t n) { return uint64_t((unsigned __int128)bits * n >> 64); }

std::string hex64(uint64_t v) {
  char buffer[17];
  std::snprintf(buffer, sizeof(buffer), "%016llx", (unsigned long long)v);
  return buffer;
}

void write_file_atomically(const fs::path& path, const void* data, size_t size) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    DSV3_CHECK(out.good(), "[data] cannot write ", tmp.string(), ": check that the directory is writable");
    out.write(static_cast<const char*>(data), std::streamsize(size));
    out.close();
    DSV3_CHECK(out.good(), "[data] failed writing ", size, " bytes to ", tmp.string(), " (disk full?)");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  DSV3_CHECK(!ec, "[data] cannot rename ", tmp.string(), " to ", path.string(), ": ", ec.message());
}

// Packs int32 ids as little-endian uint16 / uint32 bytes.
std::vector<uint8_t> pack_ids(const std::vector<int32_t>& ids, TokenDtype dtype) {
  const size_t width = token_dtype_size(dtype);
  std::vector<uint8_t> bytes(ids.size() * width);
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto v = uint32_t(ids[i]);
    for (size_t b = 0; b < width; ++b) bytes[i * width + b] = uint8_t(v >> (8 * b));
  }
  return bytes;
}

}  // namespace

const char* token_split_name(TokenSplit split) { return split == TokenSplit::train ? "train" : "val"; }
const char* token_dtype_name(TokenDtype dtype) { return dtype == TokenDtype::u16 ? "uint16" : "uint32"; }
size_t token_dtype_size(TokenDtype dtype) { return dtype == TokenDtype::u16 ? 2 : 4; }

nlohmann::json TokenShardsManifest::to_json() const {
  auto split_json = [](const TokenSplitInfo& s) {
    return nlohmann::json{{"file", s.file}, {"tokens", s.tokens}, {"documents", s.documents}};
  };
  nlohmann::json j;
  j["format"] = kFormat;
  j["version"] = kVersion;
  j["dtype"] = token_dtype_name(dtype);
  j["vocab_size"] = vocab_size;
  j["bos_id"] = bos_id ? nlohmann::json(*bos_id) : nlohmann::json(nullptr);
  j["eos_id"] = eos_id ? nlohmann::json(*eos_id) : nlohmann::json(nullptr);
  j["document_layout"] = document_layout;
  j["tokenizer"] = {{"path", tokenizer_path}, {"hash", tokenizer_hash}};
  j["source"] = source;
  j["val_fraction"] = val_fraction;
  j["seed"] = seed;
  j["splits"] = {{"train", split_json(train)}, {"val", split_json(val)}};
  return j;
}

TokenShardsManifest TokenShardsManifest::from_json(const nlohmann::json& j, const std::string& where) {
  auto fail_field = [&](const std::string& field, const char* expected) {
    DSV3_FAIL("[token-shards] ", where, ": field \"", field, "\" is missing or not ", expected,
              "; the manifest is damaged or was not written by `dsv3 data` (run it again)");
  };
  DSV3_CHECK(j.is_object(), "[token-shards] ", where, " is not a JSON object");
  auto field = [&](const nlohmann::json& parent, const std::string& name, const std::string& path) -> const nlohmann::json& {
    if (!parent.is_object() || !parent.contains(name)) fail_field(path, "present");
    return parent[name];
  };
  auto string_field = [&](const nlohmann::json& parent, const std::string& name, const std::string& path) {
    const nlohmann::json& v = field(parent, name, path);
    if (!v.is_string()) fail_field(path, "a string");
    return v.get<std::string>();
  };
  auto count_field = [&](const nlohmann::json& parent, const std::string& name, const std::string& path) {
    const nlohmann::json& v = field(parent, name, path);
    if (!v.is_number_integer() || v.get<int64_t>() < 0) fail_field(path, "a non-negative integer");
    return v.get<int64_t>();
  };
  auto optional_id = [&](const std::string& name) -> std::optional<int32_t> {
    const nlohmann::json& v = field(j, name, name);
    if (v.is_null()) return std::nullopt;
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= (int64_t(1) << 31))
      fail_field(name, "null or a token id");
    return int32_t(v.get<int64_t>());
  };

  const std::string format = string_field(j, "format", "format");
  DSV3_CHECK(format == kFormat, "[token-shards] ", where, ": format is '", format, "', expected '", kFormat,
             "': this is not a dsv3 token shard manifest");
  const int64_t version = count_field(j, "version", "version");
  DSV3_CHECK(version == kVersion, "[token-shards] ", where, ": version ", version, " is not supported (this dsv3 reads ",
             kVersion, "); re-create the shards with this dsv3's `dsv3 data`");
  TokenShardsManifest m;
  const std::string dtype = string_field(j, "dtype", "dtype");
  if (dtype == "uint16") m.dtype = TokenDtype::u16;
  else if (dtype == "uint32") m.dtype = TokenDtype::u32;
  else DSV3_FAIL("[token-shards] ", where, ": dtype '", dtype, "' is not supported (uint16 or uint32)");
  m.vocab_size = count_field(j, "vocab_size", "vocab_size");
  DSV3_CHECK(m.vocab_size > 0 && m.vocab_size <= (int64_t(1) << 31), "[token-shards] ", where, ": vocab_size ",
             m.vocab_size, " is out of range");
  DSV3_CHECK(m.dtype == TokenDtype::u32 || m.vocab_size <= 65536, "[token-shards] ", where, ": vocab_size ",
             m.vocab_size, " does not fit dtype uint16");
  m.bos_id = optional_id("bos_id");
  m.eos_id = optional_id("eos_id");
  for (const auto& id : {m.bos_id, m.eos_id})
    DSV3_CHECK(!id || *id < m.vocab_size, "[token-shards] ", where, ": BOS/EOS id ", *id, " is not below vocab_size ",
               m.vocab_size);
  m.document_layout = string_field(j, "document_layout", "document_layout");
  const nlohmann::json& tokenizer = field(j, "tokenizer", "tokenizer");
  m.tokenizer_path = string_field(tokenizer, "path", "tokenizer.path");
  m.tokenizer_hash = string_field(tokenizer, "hash", "tokenizer.hash");
  m.source = string_field(j, "source", "source");
  const nlohmann::json& fraction = field(j, "val_fraction", "val_fraction");
  if (!fraction.is_number() || fraction.get<double>() < 0 || fraction.get<double>() >= 1)
    fail_field("val_fraction", "a number in [0, 1)");
  m.val_fraction = fraction.get<double>();
  const nlohmann::json& seed = field(j, "seed", "seed");
  if (!seed.is_number_unsigned() && !(seed.is_number_integer() && seed.get<int64_t>() >= 0))
    fail_field("seed", "a non-negative integer");
  m.seed = seed.get<uint64_t>();
  const nlohmann::json& splits = field(j, "splits", "splits");
  for (TokenSplit s : {TokenSplit::train, TokenSplit::val}) {
    const std::string name = token_split_name(s);
    const nlohmann::json& split = field(splits, name, "splits." + name);
    TokenSplitInfo& info = s == TokenSplit::train ? m.train : m.val;
    info.file = string_field(split, "file", "splits." + name + ".file");
    DSV3_CHECK(!info.file.empty() && info.file.find('/') == std::string::npos && info.file != "." &&
                   info.file != "..",
               "[token-shards] ", where, ": splits.", name, ".file '", info.file,
               "' must be a plain file name in the shard directory");
    info.tokens = count_field(split, "tokens", "splits." + name + ".tokens");
    info.documents = count_field(split, "documents", "splits." + name + ".documents");
  }
  return m;
}

std::string file_fingerprint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  DSV3_CHECK(in.good(), "[data] cannot open ", path, " to fingerprint it");
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64
  std::vector<char> buffer(1 << 16);
  while (in) {
    in.read(buffer.data(), std::streamsize(buffer.size()));
    for (std::streamsize i = 0; i < in.gcount(); ++i) {
      h ^= uint8_t(buffer[size_t(i)]);
      h *= 0x100000001b3ull;
    }
  }
  DSV3_CHECK(!in.bad(), "[data] failed reading ", path);
  return "fnv1a64:" + hex64(h);
}

std::vector<bool> choose_val_documents(int64_t n_documents, double val_fraction, uint64_t seed) {
  DSV3_CHECK(n_documents >= 0, "[data] negative document count");
  DSV3_CHECK(val_fraction >= 0 && val_fraction < 1, "[data] val fraction must be in [0, 1), got ", val_fraction);
  std::vector<bool> is_val(size_t(n_documents), false);
  if (val_fraction == 0 || n_documents < 2) return is_val;
  int64_t n_val = std::llround(double(n_documents) * val_fraction);
  n_val = std::clamp<int64_t>(n_val, 1, n_documents - 1);
  std::vector<int64_t> order(static_cast<size_t>(n_documents));
  for (int64_t i = 0; i < n_documents; ++i) order[size_t(i)] = i;
  uint64_t state = splitmix64(seed ^ 0x6461746153706C74ull);  // "dataSplt"
  for (int64_t i = n_documents - 1; i > 0; --i) {
    state = splitmix64(state);
    std::swap(order[size_t(i)], order[size_t(below(state, uint64_t(i + 1)))]);
  }
  for (int64_t k = 0; k < n_val; ++k) is_val[size_t(order[size_t(k)])] = true;
  return is_val;
}

TokenShardsManifest write_token_shards(const std::vector<std::string>& documents, const Tokenizer& tokenizer,
                                       const std::string& out_dir, const TokenShardsWriteOptions& options) {
  DSV3_CHECK(!documents.empty(), "[data] no documents to tokenize");
  DSV3_CHECK(tokenizer.eos_id().has_value(), "[data] tokenizer ", tokenizer.name(),
             " has no EOS token (tokenizer_config.json eos_token or <｜end▁of▁sentence｜>); documents need one to "
             "be separated");
  TokenShardsManifest m;
  m.vocab_size = tokenizer.vocab_size();
  m.dtype = m.vocab_size <= 65536 ? TokenDtype::u16 : TokenDtype::u32;
  m.bos_id = tokenizer.bos_id();
  m.eos_id = tokenizer.eos_id();
  m.document_layout = m.bos_id ? "BOS text EOS" : "text EOS";
  if (!options.tokenizer_path.empty()) {
    m.tokenizer_path = fs::absolute(options.tokenizer_path).lexically_normal().string();
    m.tokenizer_hash = file_fingerprint(options.tokenizer_path);
  }
  m.source = options.source;
  m.val_fraction = options.val_fraction;
  m.seed = options.seed;
  m.train.file = "train.bin";
  m.val.file = "val.bin";
  const std::vector<bool> is_val = choose_val_documents(int64_t(documents.size()), options.val_fraction, options.seed);

  // Encode in parallel, one document per task.
  int64_t total_bytes = 0;
  for (const std::string& d : documents) total_bytes += int64_t(d.size());
  std::vector<std::vector<int32_t>> encoded(documents.size());
  std::vector<std::string> errors(documents.size());
  std::atomic<int64_t> total_tokens{0};
  {
    ProgressBar progress("encoding", total_bytes, "bytes", options.show_progress);
    parallel_for(int64_t(documents.size()), 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        try {
          encoded[size_t(i)] = tokenizer.encode(documents[size_t(i)], /*allow_special=*/false);
        } catch (const std::exception& e) {
          errors[size_t(i)] = e.what();
        }
        total_tokens += int64_t(encoded[size_t(i)].size());
        progress.add(int64_t(documents[size_t(i)].size()));
      }
    });
    progress.set_note(format_count(double(total_tokens.load())) + " tokens");
    progress.finish();
  }
  for (size_t i = 0; i < errors.size(); ++i)
    DSV3_CHECK(errors[i].empty(), "[data] document ", i, ": ", errors[i]);

  std::vector<int32_t> train_ids, val_ids;
  for (size_t i = 0; i < documents.size(); ++i) {
    std::vector<int32_t>& out = is_val[i] ? val_ids : train_ids;
    TokenSplitInfo& info = is_val[i] ? m.val : m.train;
    if (m.bos_id) out.push_back(*m.bos_id);
    out.insert(out.end(), encoded[i].begin(), encoded[i].end());
    out.push_back(*m.eos_id);
    info.documents += 1;
    std::vector<int32_t>().swap(encoded[i]);
  }
  m.train.tokens = int64_t(train_ids.size());
  m.val.tokens = int64_t(val_ids.size());

  const fs::path dir(out_dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  DSV3_CHECK(!ec, "[data] cannot create directory ", out_dir, ": ", ec.message());
  fs::remove(dir / "manifest.json", ec);  // until the new one is written, the directory is not valid shards
  for (const auto& [ids, info] : {std::pair{&train_ids, &m.train}, std::pair{&val_ids, &m.val}}) {
    const std::vector<uint8_t> bytes = pack_ids(*ids, m.dtype);
    write_file_atomically(dir / info->file, bytes.data(), bytes.size());
  }
  const std::string manifest = m.to_json().dump(2) + "\n";
  write_file_atomically(dir / "manifest.json", manifest.data(), manifest.size());
  return m;
}

// ---------------------------------------------------------------------------------------------
// Reader

namespace {

// One read-only mapping of a whole file (nothing mapped for an empty file).
class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    DSV3_CHECK(fd_ >= 0, "[token-shards] cannot open ", path, ": ", std::strerror(errno),
               "; the shard directory is incomplete (run `dsv3 data` again)");
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
      const int e = errno;
      ::close(fd_);
      DSV3_FAIL("[token-shards] cannot stat ", path, ": ", std::strerror(e));
    }
    size_ = size_t(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
      if (p == MAP_FAILED) {
        const int e = errno;
        ::close(fd_);
        DSV3_FAIL("[token-shards] cannot mmap ", path, " (", size_, " bytes): ", std::strerror(e));
      }
      data_ = static_cast<const uint8_t*>(p);
    }
  }
  ~MappedFile() { reset(); }
  MappedFile(MappedFile&& o) noexcept { *this = std::move(o); }
  MappedFile& operator=(MappedFile&& o) noexcept {
    if (this != &o) {
      reset();
      std::swap(path_, o.path_);
      std::swap(fd_, o.fd_);
      std::swap(data_, o.data_);
      std::swap(size_, o.size_);
    }
    return *this;
  }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void reset() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    if (fd_ >= 0) ::close(fd_);
    data_ = nullptr;
    fd_ = -1;
    size_ = 0;
  }
  std::string path_;
  int fd_ = -1;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace

struct TokenShards::Impl {
  std::string dir;
  TokenShardsManifest manifest;
  MappedFile files[2];  // train, val

  const MappedFile& file(TokenSplit s) const { return files[s == TokenSplit::train ? 0 : 1]; }

  // Reads `count` ids starting at `offset` (caller checked the range).
  void read(TokenSplit s, int64_t offset, int64_t count, int32_t* out) const {
    const uint8_t* base = file(s).data();
    if (manifest.dtype == TokenDtype::u16) {
      for (int64_t i = 0; i < count; ++i) {
        uint16_t v;
        std::memcpy(&v, base + size_t(offset + i) * 2, 2);
        out[i] = int32_t(v);
      }
    } else {
      for (int64_t i = 0; i < count; ++i) {
        uint32_t v;
        std::memcpy(&v, base + size_t(offset + i) * 4, 4);
        out[i] = int32_t(v);
      }
    }
  }

  void check_window(TokenSplit split, int64_t seq_len) const {
    DSV3_CHECK(seq_len >= 1, "[token-shards] sequence length must be >= 1, got ", seq_len);
    const int64_t n = manifest.split(split).tokens;
    DSV3_CHECK(n >= seq_len + 1, "[token-shards] the ", token_split_name(split), " split of ", dir, " has ", n,
               " tokens, fewer than one window of seq_len + 1 = ", seq_len + 1,
               ": use a shorter sequence or more data (or a larger --val-fraction for val)");
  }
};

TokenShards::TokenShards(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TokenShards::TokenShards(TokenShards&&) noexcept = default;
TokenShards& TokenShards::operator=(TokenShards&&) noexcept = default;
TokenShards::~TokenShards() = default;

TokenShards TokenShards::open(const std::string& dir, bool check_ids) {
  static_assert(std::endian::native == std::endian::little, "token shards are little-endian");
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  const std::string manifest_path = (fs::path(dir) / "manifest.json").string();
  std::ifstream in(manifest_path, std::ios::binary);
  DSV3_CHECK(in.good(), "[token-shards] cannot open ", manifest_path,
             ": not a token shard directory (create one with `dsv3 data --tokenizer FILE --corpus brown --out ", dir,
             "`)");
  std::ostringstream text;
  text << in.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::parse_error& e) {
    DSV3_FAIL("[token-shards] ", manifest_path, " is not valid JSON (", e.what(), "); run `dsv3 data` again");
  }
  impl->manifest = TokenShardsManifest::from_json(j, manifest_path);
  const TokenShardsManifest& m = impl->manifest;
  DSV3_CHECK(m.train.file != m.val.file, "[token-shards] ", manifest_path, ": train and val use the same file");
  for (TokenSplit s : {TokenSplit::train, TokenSplit::val}) {
    const TokenSplitInfo& info = m.split(s);
    const std::string path = (fs::path(dir) / info.file).string();
    MappedFile file(path);
    const size_t width = token_dtype_size(m.dtype);
    DSV3_CHECK(file.size() == size_t(info.tokens) * width, "[token-shards] ", path, " has ", file.size(),
               " bytes but ", manifest_path, " says ", info.tokens, " ", token_dtype_name(m.dtype), " tokens (",
               size_t(info.tokens) * width,
               " bytes): the files do not belong together or writing was interrupted; run `dsv3 data` again");
    impl->files[s == TokenSplit::train ? 0 : 1] = std::move(file);
    if (check_ids && info.tokens > 0) {
      // Find the first id >= vocab_size, if any (chunks in parallel, the smallest index wins).
      std::atomic<int64_t> first_bad{info.tokens};
      const Impl& self = *impl;
      parallel_for(info.tokens, int64_t(1) << 20, [&](int64_t begin, int64_t end) {
        std::vector<int32_t> chunk(size_t(std::min<int64_t>(end - begin, 1 << 16)));
        for (int64_t at = begin; at < end; at += int64_t(chunk.size())) {
          const int64_t count = std::min<int64_t>(int64_t(chunk.size()), end - at);
          self.read(s, at, count, chunk.data());
          for (int64_t i = 0; i < count; ++i) {
            if (chunk[size_t(i)] < 0 || chunk[size_t(i)] >= m.vocab_size) {
              int64_t expected = first_bad.load();
              while (at + i < expected && !first_bad.compare_exchange_weak(expected, at + i)) {
              }
              return;
            }
          }
        }
      });
      if (first_bad.load() < info.tokens) {
        int32_t bad = 0;
        impl->read(s, first_bad.load(), 1, &bad);
        DSV3_FAIL("[token-shards] ", path, ": token ", first_bad.load(), " is id ", uint32_t(bad),
                  ", not below the manifest's vocab_size ", m.vocab_size,
                  ": the file is damaged or belongs to another tokenizer; run `dsv3 data` again");
      }
    }
  }
  return TokenShards(std::move(impl));
}

const TokenShardsManifest& TokenShards::manifest() const { return impl_->manifest; }
const std::string& TokenShards::dir() const { return impl_->dir; }

int32_t TokenShards::token(TokenSplit split, int64_t index) const {
  const int64_t n = num_tokens(split);
  DSV3_CHECK(index >= 0 && index < n, "[token-shards] token index ", index, " is outside the ",
             token_split_name(split), " split (", n, " tokens)");
  int32_t v = 0;
  impl_->read(split, index, 1, &v);
  return v;
}

void TokenShards::copy_tokens(TokenSplit split, int64_t offset, std::span<int32_t> out) const {
  const int64_t n = num_tokens(split), count = int64_t(out.size());
  DSV3_CHECK(offset >= 0 && count <= n && offset <= n - count, "[token-shards] tokens [", offset, ", ",
             offset + count, ") are outside the ", token_split_name(split), " split (", n, " tokens)");
  impl_->read(split, offset, count, out.data());
}

int64_t TokenShards::window_offset(TokenSplit split, uint64_t seed, int64_t step, int64_t row, int64_t seq_len) const {
  impl_->check_window(split, seq_len);
  DSV3_CHECK(step >= 0 && row >= 0, "[token-shards] step and row must be >= 0 (got ", step, ", ", row, ")");
  const uint64_t positions = uint64_t(num_tokens(split) - seq_len);  // offsets 0 .. n - seq_len - 1
  uint64_t h = splitmix64(seed ^ (split == TokenSplit::train ? 0x747261696Eull : 0x76616Cull));
  h = splitmix64(h ^ uint64_t(step));
  h = splitmix64(h ^ uint64_t(row));
  return int64_t(below(h, positions));
}

void TokenShards::batch_into(TokenSplit split, int64_t step, int64_t batch_size, int64_t seq_len, uint64_t seed,
                             std::span<int32_t> out) const {
  DSV3_CHECK(batch_size >= 1, "[token-shards] batch size must be >= 1, got ", batch_size);
  impl_->check_window(split, seq_len);
  const int64_t row_len = seq_len + 1;
  DSV3_CHECK(int64_t(out.size()) == batch_size * row_len, "[token-shards] batch buffer holds ", out.size(),
             " ids, expected batch_size * (seq_len + 1) = ", batch_size * row_len);
  for (int64_t r = 0; r < batch_size; ++r)
    impl_->read(split, window_offset(split, seed, step, r, seq_len), row_len, out.data() + r * row_len);
}

std::vector<int32_t> TokenShards::batch(TokenSplit split, int64_t step, int64_t batch_size, int64_t seq_len,
                                        uint64_t seed) const {
  DSV3_CHECK(batch_size >= 1 && seq_len >= 1, "[token-shards] batch size and sequence length must be >= 1 (got ",
             batch_size, ", ", seq_len, ")");
  std::vector<int32_t> out(size_t(batch_size * (seq_len + 1)));
  batch_into(split, step, batch_size, seq_len, seed, out);
  return out;
}

int64_t TokenShards::num_sequential_windows(TokenSplit split, int64_t seq_len) const {
  DSV3_CHECK(seq_len >= 1, "[token-shards] sequence length must be >= 1, got ", seq_len);
  const int64_t n = num_tokens(split);
  return n >= 1 ? (n - 1) / seq_len : 0;
}

std::vector<int32_t> TokenShards::sequential_batch(TokenSplit split, int64_t first_window, int64_t batch_size,
                                                   int64_t seq_len) const {
  const int64_t windows = num_sequential_windows(split, seq_len);
  DSV3_CHECK(batch_size >= 1 && first_window >= 0 && first_window + batch_size <= windows, "[token-shards] windows ",
             first_window, "..", first_window + batch_size - 1, " of length ", seq_len, " + 1 are outside the ",
             token_split_name(split), " split, which has ", windows);
  const int64_t row_len = seq_len + 1;
  std::vector<int32_t> out(size_t(batch_size * row_len));
  for (int64_t r = 0; r < batch_size; ++r)
    impl_->read(split, (first_window + r) * seq_len, row_len, out.data() + r * row_len);
  return out;
}

}  // namespace dsv3
