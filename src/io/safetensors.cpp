// safetensors reading (mmap, validated) and writing (streamed, atomic rename). Format in safetensors.h.
#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/error.h"

namespace dsv3 {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian data; dsv3 maps it without conversion");

using json = nlohmann::json;
namespace fs = std::filesystem;

// Real headers are a few MB (DeepSeek-V3 shards: ~100 KB); anything this large is corruption.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;
constexpr const char* kRedownload = "the file is corrupt or truncated: re-download it";

std::string json_brief(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

[[noreturn]] void fail_tensor(const std::string& path, const std::string& name, const std::string& what) {
  DSV3_FAIL("[safetensors] ", path, ": tensor '", name, "': ", what, "; ", kRedownload);
}

// Reads a non-negative integer that fits in uint64 (and, when `fits_int64`, in int64).
bool read_count(const json& v, bool fits_int64, uint64_t* out) {
  if (!v.is_number_integer()) return false;
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
  } else {
    const int64_t s = v.get<int64_t>();
    if (s < 0) return false;
    *out = uint64_t(s);
  }
  return !fits_int64 || *out <= uint64_t(std::numeric_limits<int64_t>::max());
}

// Unmaps on scope exit unless released (the constructor may throw after mapping).
struct MapGuard {
  void* addr;
  size_t size;
  ~MapGuard() {
    if (addr) munmap(addr, size);
  }
};

// Parses the header and rejects duplicate keys in any object (nlohmann would keep the last one
// silently). `duplicate` receives the first repeated key, `owner` the top-level key it sits under.
json parse_header(std::string_view text, std::string* duplicate, std::string* owner) {
  std::vector<std::set<std::string>> open_objects;
  std::string top_key;
  json::parser_callback_t callback = [&](int depth, json::parse_event_t event, json& parsed) {
    if (!duplicate->empty()) return true;
    switch (event) {
      case json::parse_event_t::object_start:
        open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case json::parse_event_t::key: {
        const std::string key = parsed.get<std::string>();
        if (depth == 1) top_key = key;
        if (!open_objects.empty() && !open_objects.back().insert(key).second) {
          *duplicate = key;
          *owner = top_key;
        }
        break;
      }
      default:
        break;
    }
    return true;
  };
  return json::parse(text.begin(), text.end(), callback);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// SafetensorsFile

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  // O_NONBLOCK so a FIFO or device path cannot block the open; only regular files are accepted.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  DSV3_CHECK(fd >= 0, "[safetensors] cannot open ", path, ": ", std::strerror(errno),
             "; check the path and permissions");
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    DSV3_FAIL("[safetensors] ", path, " is not a regular file; pass a .safetensors file");
  }
  const uint64_t file_size = uint64_t(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    DSV3_FAIL("[safetensors] ", path, ": file is ", file_size, " bytes, shorter than the 8-byte header length; ",
              kRedownload);
  }
  void* addr = mmap(nullptr, size_t(file_size), PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  DSV3_CHECK(addr != MAP_FAILED, "[safetensors] cannot mmap ", path, ": ", std::strerror(map_errno));
  MapGuard guard{addr, size_t(file_size)};
  const auto* bytes = static_cast<const uint8_t*>(addr);

  uint64_t header_len;
  std::memcpy(&header_len, bytes, 8);
  DSV3_CHECK(header_len <= kMaxHeaderBytes, "[safetensors] ", path, ": header length ", header_len,
             " bytes is absurd (limit ", kMaxHeaderBytes, "); ", kRedownload);
  DSV3_CHECK(header_len <= file_size - 8, "[safetensors] ", path, ": header length ", header_len,
             " exceeds the file size ", file_size, "; ", kRedownload);
  const uint64_t data_size = file_size - 8 - header_len;

  json header;
  std::string duplicate, owner;
  try {
    header = parse_header(std::string_view(reinterpret_cast<const char*>(bytes + 8), header_len), &duplicate, &owner);
  } catch (const json::exception& e) {
    DSV3_FAIL("[safetensors] ", path, ": header is not valid JSON (", e.what(), "); ", kRedownload);
  }
  if (!duplicate.empty()) {
    if (owner == duplicate) fail_tensor(path, duplicate, "tensor name appears twice in the header");
    fail_tensor(path, owner, cat("key '", duplicate, "' appears twice in its header entry"));
  }
  DSV3_CHECK(header.is_object(), "[safetensors] ", path, ": header must be a JSON object, got ", json_brief(header),
             "; ", kRedownload);

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail_tensor(path, name, "must be an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          fail_tensor(path, name, cat("value of '", m.key(), "' must be a string, got ", json_brief(m.value())));
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object()) fail_tensor(path, name, cat("entry must be an object, got ", json_brief(v)));
    for (const char* key : {"dtype", "shape", "data_offsets"})
      if (!v.contains(key)) fail_tensor(path, name, cat("entry has no '", key, "'"));

    SafetensorsEntry e;
    const json& dt = v.at("dtype");
    if (!dt.is_string()) fail_tensor(path, name, cat("dtype must be a string, got ", json_brief(dt)));
    if (!parse_dtype(dt.get<std::string>(), &e.dtype))
      DSV3_FAIL("[safetensors] ", path, ": tensor '", name, "': dtype '", dt.get<std::string>(),
                "' is not supported (dsv3 reads F32, BF16, F16, F8_E4M3, F64, I64, I32); convert the checkpoint");

    const json& shape = v.at("shape");
    if (!shape.is_array()) fail_tensor(path, name, cat("shape must be a list, got ", json_brief(shape)));
    uint64_t numel = 1;
    bool overflow = false;
    for (const json& d : shape) {
      uint64_t dim;
      if (!read_count(d, true, &dim))
        fail_tensor(path, name, cat("shape ", json_brief(shape), " must hold non-negative integers"));
      e.shape.push_back(int64_t(dim));
      overflow = overflow || __builtin_mul_overflow(numel, dim, &numel);
    }
    uint64_t nbytes = 0;
    overflow = overflow || numel > uint64_t(std::numeric_limits<int64_t>::max()) ||
               __builtin_mul_overflow(numel, uint64_t(dtype_size(e.dtype)), &nbytes);
    if (overflow) fail_tensor(path, name, cat("shape ", json_brief(shape), " is too large"));

    const json& off = v.at("data_offsets");
    uint64_t begin, end;
    if (!off.is_array() || off.size() != 2 || !read_count(off[0], false, &begin) || !read_count(off[1], false, &end))
      fail_tensor(path, name,
                  cat("data_offsets must be [begin, end] with non-negative integers, got ", json_brief(off)));
    if (end < begin) fail_tensor(path, name, cat("data_offsets [", begin, ", ", end, "] end before begin"));
    if (end > data_size)
      fail_tensor(path, name,
                  cat("data_offsets [", begin, ", ", end, "] reach past the data section (", data_size, " bytes)"));
    if (end - begin != nbytes)
      fail_tensor(path, name,
                  cat("data_offsets [", begin, ", ", end, "] hold ", end - begin, " bytes but ", dtype_name(e.dtype),
                      " ", shape_str(e.shape), " needs ", nbytes));
    e.begin = size_t(begin);
    e.end = size_t(end);
    entries_.emplace(name, std::move(e));
  }

  // Overlaps: sort the non-empty ranges by start; each must end before the next begins.
  std::vector<std::pair<size_t, const std::string*>> starts;
  for (const auto& [name, e] : entries_)
    if (e.end > e.begin) starts.emplace_back(e.begin, &name);
  std::sort(starts.begin(), starts.end());
  for (size_t i = 1; i < starts.size(); ++i) {
    const SafetensorsEntry& prev = entries_.at(*starts[i - 1].second);
    if (prev.end > starts[i].first)
      fail_tensor(
          path, *starts[i].second,
          cat("data overlaps tensor '", *starts[i - 1].second, "' (bytes ", starts[i].first, "..", prev.end, ")"));
  }

  guard.addr = nullptr;
  map_ = addr;
  map_size_ = size_t(file_size);
  data_section_ = bytes + 8 + header_len;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) munmap(map_, anonymous_ ? anonymous_size_ : map_size_);
}

bool SafetensorsFile::load_into_memory() {
  if (!map_ || anonymous_) return anonymous_;
  constexpr size_t kHugePage = size_t(2) << 20;
  const size_t size = (map_size_ + kHugePage - 1) / kHugePage * kHugePage;
  // Over-allocate by one huge page so the copy can start on a 2 MB boundary.
  void* raw = mmap(nullptr, size + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return false;
  const uintptr_t start = (reinterpret_cast<uintptr_t>(raw) + kHugePage - 1) / kHugePage * kHugePage;
  const size_t head = start - reinterpret_cast<uintptr_t>(raw);
  if (head > 0) munmap(raw, head);
  if (kHugePage - head > 0) munmap(reinterpret_cast<uint8_t*>(start) + size, kHugePage - head);
  void* copy = reinterpret_cast<void*>(start);
  madvise(copy, size, MADV_HUGEPAGE);
  // read() from the file rather than copying from the mapping: the kernel copies from its page cache
  // without a page fault per 4 KB of source.
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  bool ok = fd >= 0;
  for (size_t done = 0; ok && done < map_size_;) {
    const ssize_t got = ::pread(fd, static_cast<uint8_t*>(copy) + done, std::min(map_size_ - done, size_t(1) << 30),
                                off_t(done));
    if (got <= 0) ok = false;
    else done += size_t(got);
  }
  if (fd >= 0) ::close(fd);
  if (!ok) {
    munmap(copy, size);
    return false;
  }
  mprotect(copy, size, PROT_READ);
  data_section_ = static_cast<const uint8_t*>(copy) + (data_section_ - static_cast<const uint8_t*>(map_));
  munmap(map_, map_size_);
  map_ = copy;
  anonymous_ = true;
  anonymous_size_ = size;
  return true;
}

TensorView SafetensorsFile::get(const std::string& name) const {
  const auto it = entries_.find(name);
  DSV3_CHECK(it != entries_.end(), "[safetensors] ", path_, ": no tensor '", name, "' (", entries_.size(),
             " tensors); check that the file belongs to this model");
  return TensorView{it->second.dtype, it->second.shape, data_section_ + it->second.begin};
}

// ---------------------------------------------------------------------------------------------
// TensorStore

namespace {

json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  DSV3_CHECK(in.good(), "[safetensors] cannot open ", path, "; check permissions");
  std::ostringstream text;
  text << in.rdbuf();
  try {
    return json::parse(text.str());
  } catch (const json::exception& e) {
    DSV3_FAIL("[safetensors] ", path, " is not valid JSON (", e.what(), "); re-download it");
  }
}

}  // namespace

TensorStore TensorStore::open_file(const std::string& path) {
  TensorStore store;
  const fs::path parent = fs::path(path).parent_path();
  store.dir_ = parent.empty() ? "." : parent.string();
  store.files_.push_back(std::make_unique<SafetensorsFile>(path));
  for (const auto& [name, e] : store.files_.back()->entries()) store.file_of_[name] = store.files_.back().get();
  return store;
}

bool TensorStore::load_into_memory_if_it_fits(double fraction_of_memory) {
  size_t bytes = 0;
  for (const auto& file : files_) bytes += file->mapped_bytes();
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0 || double(bytes) > fraction_of_memory * double(pages) * double(page)) return false;
  bool all = true;
  for (const auto& file : files_) all = file->load_into_memory() && all;
  return all;
}

TensorStore TensorStore::open_dir(const std::string& dir) {
  std::error_code ec;
  DSV3_CHECK(fs::is_directory(dir, ec), "[safetensors] ", dir,
             " is not a directory; pass the checkpoint directory (with config.json and *.safetensors)");
  TensorStore store;
  store.dir_ = dir;
  const fs::path root(dir);

  const fs::path index_path = root / "model.safetensors.index.json";
  if (fs::exists(index_path, ec)) {
    const std::string index = index_path.string();
    const json j = read_json_file(index);
    DSV3_CHECK(j.is_object() && j.contains("weight_map") && j.at("weight_map").is_object(), "[safetensors] ", index,
               ": no \"weight_map\" object; re-download the index");
    std::map<std::string, SafetensorsFile*> shards;
    for (auto it = j.at("weight_map").begin(); it != j.at("weight_map").end(); ++it) {
      const std::string& name = it.key();
      DSV3_CHECK(it.value().is_string(), "[safetensors] ", index, ": tensor '", name,
                 "' maps to a non-string; re-download the index");
      const std::string file = it.value().get<std::string>();
      // Shards are plain file names next to the index; never follow a path out of the directory.
      DSV3_CHECK(!file.empty() && file.find('/') == std::string::npos && file != "." && file != "..", "[safetensors] ",
                 index, ": tensor '", name, "' maps to '", file,
                 "', which is not a file name in the checkpoint directory; re-download the index");
      auto [slot, inserted] = shards.emplace(file, nullptr);
      if (inserted) {
        const fs::path shard = root / file;
        DSV3_CHECK(fs::is_regular_file(shard, ec), "[safetensors] ", index, " lists shard '", file, "' (for tensor '",
                   name, "') but ", shard.string(), " is missing; download all shards of the checkpoint");
        store.files_.push_back(std::make_unique<SafetensorsFile>(shard.string()));
        slot->second = store.files_.back().get();
      }
      DSV3_CHECK(slot->second->has(name), "[safetensors] ", index, " places tensor '", name, "' in ", file, " but ",
                 slot->second->path(), " does not contain it; re-download that shard and the index");
      store.file_of_[name] = slot->second;
    }
    return store;
  }

  const fs::path single = root / "model.safetensors";
  if (fs::exists(single, ec)) {
    TensorStore s = open_file(single.string());
    s.dir_ = dir;
    return s;
  }

  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(root, ec))
    if (entry.path().extension() == ".safetensors" && entry.is_regular_file(ec)) files.push_back(entry.path().string());
  DSV3_CHECK(!ec, "[safetensors] cannot list ", dir, ": ", ec.message());
  std::sort(files.begin(), files.end());
  DSV3_CHECK(!files.empty(), "[safetensors] ", dir,
             " has no model.safetensors.index.json, model.safetensors or *.safetensors; download the "
             "checkpoint's weights into it");
  for (const std::string& f : files) {
    store.files_.push_back(std::make_unique<SafetensorsFile>(f));
    const SafetensorsFile* file = store.files_.back().get();
    for (const auto& [name, e] : file->entries()) {
      const auto [it, inserted] = store.file_of_.emplace(name, file);
      DSV3_CHECK(inserted, "[safetensors] tensor '", name, "' appears in both ", it->second->path(), " and ", f,
                 "; remove the stray file from ", dir);
    }
  }
  return store;
}

const std::string& TensorStore::file_of(const std::string& name) const {
  const auto it = file_of_.find(name);
  DSV3_CHECK(it != file_of_.end(), "[safetensors] checkpoint ", dir_, " has no tensor '", name,
             "'; check that config.json matches the weights");
  return it->second->path();
}

TensorView TensorStore::get(const std::string& name) const {
  const auto it = file_of_.find(name);
  DSV3_CHECK(it != file_of_.end(), "[safetensors] checkpoint ", dir_, " has no tensor '", name, "' (", file_of_.size(),
             " tensors); check that config.json matches the weights");
  return it->second->get(name);
}

TensorView TensorStore::get(const std::string& name, const Shape& expected_shape) const {
  TensorView v = get(name);
  DSV3_CHECK(v.shape == expected_shape, "[safetensors] ", file_of(name), ": tensor '", name, "' has shape ",
             shape_str(v.shape), " but the config expects ", shape_str(expected_shape),
             "; config.json does not match the weights");
  return v;
}

std::vector<std::string> TensorStore::names() const {
  std::vector<std::string> out;
  out.reserve(file_of_.size());
  for (const auto& [name, file] : file_of_) out.push_back(name);
  return out;
}

// ---------------------------------------------------------------------------------------------
// SafetensorsWriter

void SafetensorsWriter::add(const std::string& name, DType dtype, const Shape& shape, const void* data) {
  DSV3_CHECK(!name.empty() && name != "__metadata__", "[safetensors] invalid tensor name '", name, "'");
  for (int64_t d : shape) DSV3_CHECK(d >= 0, "[safetensors] tensor '", name, "' has negative shape ", shape_str(shape));
  DSV3_CHECK(data != nullptr || shape_numel(shape) == 0, "[safetensors] tensor '", name, "' has no data");
  items_.push_back(Item{name, dtype, shape, data});
}

void SafetensorsWriter::add(const std::string& name, Tensor tensor) {
  const DType dtype = tensor.dtype();
  const Shape shape = tensor.shape();
  const void* data = tensor.data();
  owned_.push_back(std::move(tensor));  // the buffer does not move with the Tensor object
  add(name, dtype, shape, data);
}

namespace {

struct WriteItem {
  const std::string* name;
  DType dtype;
  const Shape* shape;
  const void* data;
  size_t nbytes;
};

// Writes to `path` + ".partial" and renames, so readers never see a half-written file.
class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path) : path_(path), tmp_(path + ".partial") {
    f_ = std::fopen(tmp_.c_str(), "wb");
    DSV3_CHECK(f_ != nullptr, "[safetensors] cannot create ", tmp_, ": ", std::strerror(errno),
               "; check that the directory exists and is writable");
  }
  ~AtomicFile() {
    if (f_) {
      std::fclose(f_);
      std::remove(tmp_.c_str());
    }
  }
  void write(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    constexpr size_t kChunk = 64u << 20;
    while (n > 0) {
      const size_t m = std::min(n, kChunk);
      DSV3_CHECK(std::fwrite(p, 1, m, f_) == m, "[safetensors] writing ", tmp_, " failed: ", std::strerror(errno),
                 "; check free disk space");
      p += m;
      n -= m;
    }
  }
  void commit() {
    const bool flushed = std::fflush(f_) == 0 && fsync(fileno(f_)) == 0;
    const int err = errno;
    const bool closed = std::fclose(f_) == 0;
    f_ = nullptr;
    if (!flushed || !closed) {
      std::remove(tmp_.c_str());
      DSV3_FAIL("[safetensors] writing ", tmp_, " failed: ", std::strerror(err), "; check free disk space");
    }
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
      const int rerr = errno;
      std::remove(tmp_.c_str());
      DSV3_FAIL("[safetensors] cannot rename ", tmp_, " to ", path_, ": ", std::strerror(rerr));
    }
  }

 private:
  std::string path_, tmp_;
  FILE* f_ = nullptr;
};

// Duplicate names are caught here rather than in add(), which would cost O(n) per call
// (DeepSeek-V3 has ~92k tensors).
void check_unique_names(const std::vector<std::string>& sorted_names) {
  const auto dup = std::adjacent_find(sorted_names.begin(), sorted_names.end());
  DSV3_CHECK(dup == sorted_names.end(), "[safetensors] tensor '", *dup,
             "' was added to the writer twice; each name must be unique");
}

void write_safetensors(const std::string& path, std::vector<WriteItem> items,
                       const std::map<std::string, std::string>& metadata) {
  // Widest dtypes first, then by name (as the reference safetensors writer orders them): with the
  // header padded to 8 bytes, every tensor then starts at a multiple of its element size.
  std::sort(items.begin(), items.end(), [](const WriteItem& a, const WriteItem& b) {
    const size_t sa = dtype_size(a.dtype), sb = dtype_size(b.dtype);
    return sa != sb ? sa > sb : *a.name < *b.name;
  });
  json header = json::object();
  size_t offset = 0;
  for (const WriteItem& it : items) {
    header[*it.name] = {{"dtype", std::string(dtype_name(it.dtype))},
                        {"shape", *it.shape},
                        {"data_offsets", {offset, offset + it.nbytes}}};
    offset += it.nbytes;
  }
  std::map<std::string, std::string> meta = metadata;
  meta.emplace("format", "pt");  // Hugging Face transformers requires format "pt" to load a file
  header["__metadata__"] = meta;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the format allows trailing spaces in the header
  const uint64_t len = text.size();

  AtomicFile out(path);
  out.write(&len, 8);
  out.write(text.data(), text.size());
  for (const WriteItem& it : items) out.write(it.data, it.nbytes);
  out.commit();
}

}  // namespace

void write_file_atomic(const std::string& path, const std::string& contents) {
  AtomicFile out(path);
  out.write(contents.data(), contents.size());
  out.commit();
}

void SafetensorsWriter::write_file(const std::string& path) const {
  std::vector<std::string> names;
  for (const Item& it : items_) names.push_back(it.name);
  std::sort(names.begin(), names.end());
  check_unique_names(names);
  std::vector<WriteItem> items;
  for (const Item& it : items_)
    items.push_back(
        WriteItem{&it.name, it.dtype, &it.shape, it.data, size_t(shape_numel(it.shape)) * dtype_size(it.dtype)});
  write_safetensors(path, std::move(items), metadata_);
}

void SafetensorsWriter::write_sharded(const std::string& dir, size_t max_shard_bytes) const {
  DSV3_CHECK(max_shard_bytes > 0, "[safetensors] max_shard_bytes must be positive");
  std::error_code ec;
  fs::create_directories(dir, ec);
  DSV3_CHECK(!ec, "[safetensors] cannot create directory ", dir, ": ", ec.message());
  const fs::path root(dir);
  std::vector<std::string> names;
  for (const Item& it : items_) names.push_back(it.name);
  std::sort(names.begin(), names.end());
  check_unique_names(names);

  // Greedy packing in insertion order (model order keeps a layer's tensors together); a tensor
  // larger than the limit gets a shard of its own.
  std::vector<std::vector<WriteItem>> shards(1);
  size_t shard_bytes = 0, total = 0;
  for (const Item& it : items_) {
    const size_t n = size_t(shape_numel(it.shape)) * dtype_size(it.dtype);
    if (!shards.back().empty() && shard_bytes + n > max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(WriteItem{&it.name, it.dtype, &it.shape, it.data, n});
    shard_bytes += n;
    total += n;
  }

  const fs::path index_path = root / "model.safetensors.index.json";
  if (shards.size() == 1) {
    write_safetensors((root / "model.safetensors").string(), std::move(shards[0]), metadata_);
    // A stale index would take precedence over the new file in TensorStore::open_dir.
    fs::remove(index_path, ec);
    return;
  }
  json weight_map = json::object();
  const size_t n = shards.size();
  for (size_t i = 0; i < n; ++i) {
    char file[64];
    std::snprintf(file, sizeof file, "model-%05zu-of-%05zu.safetensors", i + 1, n);
    for (const WriteItem& it : shards[i]) weight_map[*it.name] = file;
    write_safetensors((root / file).string(), std::move(shards[i]), metadata_);
  }
  // The index is written last: a crash leaves the previous index (or none), never a partial one.
  const json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  const std::string text = index.dump(2) + "\n";
  AtomicFile out(index_path.string());
  out.write(text.data(), text.size());
  out.commit();
}

}  // namespace dsv3
