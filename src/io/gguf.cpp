#include "io/gguf.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <fstream>
#include <memory>

#include "core/error.h"

namespace dsv3 {

static_assert(std::endian::native == std::endian::little, "GGUF is little-endian; dsv3 writes it natively");

namespace {

template <typename T>
void put(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.append(bytes, sizeof(T));
}

void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}

uint64_t align_up(uint64_t n, uint64_t alignment) { return (n + alignment - 1) / alignment * alignment; }

size_t scalar_size(GgufType type) {
  switch (type) {
    case GgufType::u8: case GgufType::i8: case GgufType::boolean: return 1;
    case GgufType::u16: case GgufType::i16: return 2;
    case GgufType::u32: case GgufType::i32: case GgufType::f32: return 4;
    case GgufType::u64: case GgufType::i64: case GgufType::f64: return 8;
    case GgufType::string: case GgufType::array: return 0;
  }
  return 0;
}

bool known_type(uint32_t t) { return t <= uint32_t(GgufType::f64); }

template <typename T>
std::string encode_array(GgufType element, std::span<const T> values) {
  std::string payload;
  put<uint32_t>(payload, uint32_t(element));
  put<uint64_t>(payload, values.size());
  for (const T& v : values) put<T>(payload, v);
  return payload;
}

// Reads a GGUF file front to back with bounds checks; every error names the file and the offset.
class Reader {
 public:
  Reader(const std::string& path) : path_(path), in_(path, std::ios::binary) {
    DSV3_CHECK(in_.good(), "[gguf] cannot open ", path);
    in_.seekg(0, std::ios::end);
    size_ = uint64_t(in_.tellg());
    in_.seekg(0);
  }
  uint64_t size() const { return size_; }
  uint64_t pos() const { return pos_; }

  void read(void* out, uint64_t n, const char* what) {
    DSV3_CHECK(n <= size_ - pos_, "[gguf] ", path_, ": file ends inside ", what, " at byte ", pos_,
               " (needs ", n, " more bytes, ", size_ - pos_, " left); the file is truncated or not GGUF");
    in_.read(static_cast<char*>(out), std::streamsize(n));
    DSV3_CHECK(in_.good(), "[gguf] ", path_, ": read error at byte ", pos_);
    pos_ += n;
  }
  template <typename T>
  T get(const char* what) {
    T v;
    read(&v, sizeof(T), what);
    return v;
  }
  std::string get_string(const char* what) {
    const uint64_t n = get<uint64_t>(what);
    DSV3_CHECK(n <= size_ - pos_, "[gguf] ", path_, ": ", what, " at byte ", pos_, " claims ", n,
               " bytes, more than the file holds");
    std::string s(size_t(n), '\0');
    read(s.data(), n, what);
    return s;
  }
  [[noreturn]] void fail(const std::string& what) const { DSV3_FAIL("[gguf] ", path_, ": ", what); }

 private:
  std::string path_;
  std::ifstream in_;
  uint64_t size_ = 0, pos_ = 0;
};

void read_element(Reader& r, GgufType type, GgufValue& v, const std::string& key) {
  switch (type) {
    case GgufType::u8: v.ints.push_back(r.get<uint8_t>(key.c_str())); break;
    case GgufType::i8: v.ints.push_back(r.get<int8_t>(key.c_str())); break;
    case GgufType::u16: v.ints.push_back(r.get<uint16_t>(key.c_str())); break;
    case GgufType::i16: v.ints.push_back(r.get<int16_t>(key.c_str())); break;
    case GgufType::u32: v.ints.push_back(r.get<uint32_t>(key.c_str())); break;
    case GgufType::i32: v.ints.push_back(r.get<int32_t>(key.c_str())); break;
    case GgufType::u64: v.ints.push_back(int64_t(r.get<uint64_t>(key.c_str()))); break;
    case GgufType::i64: v.ints.push_back(r.get<int64_t>(key.c_str())); break;
    case GgufType::f32: v.floats.push_back(r.get<float>(key.c_str())); break;
    case GgufType::f64: v.floats.push_back(r.get<double>(key.c_str())); break;
    case GgufType::boolean: {
      const uint8_t b = r.get<uint8_t>(key.c_str());
      if (b > 1) r.fail(cat("bool value of '", key, "' is ", int(b), ", not 0 or 1"));
      v.ints.push_back(b);
      break;
    }
    case GgufType::string: v.strings.push_back(r.get_string(key.c_str())); break;
    case GgufType::array: r.fail(cat("'", key, "' is an array of arrays, which dsv3 does not read"));
  }
}

}  // namespace

std::string_view gguf_type_name(GgufType type) {
  static constexpr std::string_view names[] = {"u8",  "i8",   "u16",    "i16",   "u32", "i32", "f32",
                                               "bool", "string", "array", "u64", "i64", "f64"};
  const auto i = uint32_t(type);
  return i < std::size(names) ? names[i] : "unknown";
}

size_t ggml_type_size(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return 4;
    case GgmlType::F16: return 2;
    case GgmlType::BF16: return 2;
  }
  DSV3_FAIL("[gguf] unknown ggml type ", uint32_t(type));
}

std::string_view ggml_type_name(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return "F32";
    case GgmlType::F16: return "F16";
    case GgmlType::BF16: return "BF16";
  }
  return "unknown";
}

int64_t GgufTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

uint64_t GgufTensorInfo::nbytes() const { return uint64_t(numel()) * ggml_type_size(type); }

size_t GgufValue::size() const { return ints.size() + floats.size() + strings.size(); }

void GgufWriter::add_entry(const std::string& key, GgufType type, std::string payload) {
  DSV3_CHECK(!key.empty(), "[gguf] empty metadata key");
  for (const Entry& e : entries_) DSV3_CHECK(e.key != key, "[gguf] metadata key '", key, "' added twice");
  entries_.push_back(Entry{key, type, std::move(payload)});
}

#define DSV3_GGUF_SCALAR(fn, T, tag)                          \
  void GgufWriter::fn(const std::string& key, T value) {      \
    std::string payload;                                      \
    put<T>(payload, value);                                   \
    add_entry(key, GgufType::tag, std::move(payload));        \
  }
DSV3_GGUF_SCALAR(add_u8, uint8_t, u8)
DSV3_GGUF_SCALAR(add_i8, int8_t, i8)
DSV3_GGUF_SCALAR(add_u16, uint16_t, u16)
DSV3_GGUF_SCALAR(add_i16, int16_t, i16)
DSV3_GGUF_SCALAR(add_u32, uint32_t, u32)
DSV3_GGUF_SCALAR(add_i32, int32_t, i32)
DSV3_GGUF_SCALAR(add_u64, uint64_t, u64)
DSV3_GGUF_SCALAR(add_i64, int64_t, i64)
DSV3_GGUF_SCALAR(add_f32, float, f32)
DSV3_GGUF_SCALAR(add_f64, double, f64)
#undef DSV3_GGUF_SCALAR

void GgufWriter::add_bool(const std::string& key, bool value) {
  add_entry(key, GgufType::boolean, std::string(1, value ? '\1' : '\0'));
}

void GgufWriter::add_string(const std::string& key, const std::string& value) {
  std::string payload;
  put_string(payload, value);
  add_entry(key, GgufType::string, std::move(payload));
}

void GgufWriter::add_array(const std::string& key, std::span<const uint32_t> values) {
  add_entry(key, GgufType::array, encode_array(GgufType::u32, values));
}
void GgufWriter::add_array(const std::string& key, std::span<const int32_t> values) {
  add_entry(key, GgufType::array, encode_array(GgufType::i32, values));
}
void GgufWriter::add_array(const std::string& key, std::span<const float> values) {
  add_entry(key, GgufType::array, encode_array(GgufType::f32, values));
}
void GgufWriter::add_array(const std::string& key, std::span<const std::string> values) {
  std::string payload;
  put<uint32_t>(payload, uint32_t(GgufType::string));
  put<uint64_t>(payload, values.size());
  for (const std::string& s : values) put_string(payload, s);
  add_entry(key, GgufType::array, std::move(payload));
}

void GgufWriter::set_alignment(uint32_t alignment) {
  DSV3_CHECK(alignment > 0 && (alignment & (alignment - 1)) == 0, "[gguf] alignment ", alignment,
             " is not a power of two");
  DSV3_CHECK(tensors_.empty(), "[gguf] set the alignment before adding tensors");
  alignment_ = alignment;
  add_u32("general.alignment", alignment);
}

void GgufWriter::add_tensor(const std::string& name, std::vector<int64_t> ne, GgmlType type) {
  DSV3_CHECK(!name.empty() && name.size() < 64, "[gguf] tensor name '", name,
             "' must be 1 to 63 bytes (ggml's GGML_MAX_NAME is 64 with the terminator)");
  DSV3_CHECK(!ne.empty() && ne.size() <= 4, "[gguf] tensor ", name, " has ", ne.size(), " dimensions; GGUF allows 1 to 4");
  for (int64_t d : ne) DSV3_CHECK(d > 0, "[gguf] tensor ", name, " has a dimension of ", d);
  for (const GgufTensorInfo& t : tensors_) DSV3_CHECK(t.name != name, "[gguf] tensor '", name, "' added twice");
  GgufTensorInfo info{name, std::move(ne), type, 0};
  info.offset = tensors_.empty() ? 0 : align_up(tensors_.back().offset + tensors_.back().nbytes(), alignment_);
  tensors_.push_back(std::move(info));
}

uint64_t GgufWriter::data_bytes() const {
  return tensors_.empty() ? 0 : align_up(tensors_.back().offset + tensors_.back().nbytes(), alignment_);
}

void GgufWriter::write(const std::string& path,
                       const std::function<void(size_t, const GgufByteSink&)>& write_tensor) const {
  std::string head;
  put<uint32_t>(head, kGgufMagic);
  put<uint32_t>(head, kGgufVersion);
  put<uint64_t>(head, tensors_.size());
  put<uint64_t>(head, entries_.size());
  for (const Entry& e : entries_) {
    put_string(head, e.key);
    put<uint32_t>(head, uint32_t(e.type));
    head += e.payload;
  }
  for (const GgufTensorInfo& t : tensors_) {
    put_string(head, t.name);
    put<uint32_t>(head, uint32_t(t.ne.size()));
    for (int64_t d : t.ne) put<uint64_t>(head, uint64_t(d));
    put<uint32_t>(head, uint32_t(t.type));
    put<uint64_t>(head, t.offset);
  }
  head.resize(size_t(align_up(head.size(), alignment_)), '\0');

  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "wb"), &std::fclose);
  DSV3_CHECK(file != nullptr, "[gguf] cannot create ", path, ": ", std::strerror(errno));
  std::vector<char> buffer(size_t(1) << 22);
  std::setvbuf(file.get(), buffer.data(), _IOFBF, buffer.size());
  auto put_bytes = [&](const void* data, size_t n) {
    DSV3_CHECK(std::fwrite(data, 1, n, file.get()) == n, "[gguf] writing ", path, " failed: ", std::strerror(errno),
               " (is the disk full?)");
  };
  put_bytes(head.data(), head.size());
  const std::string zeros(size_t(alignment_), '\0');
  uint64_t written = 0;  // within the data section
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const GgufTensorInfo& t = tensors_[i];
    put_bytes(zeros.data(), size_t(t.offset - written));
    uint64_t got = 0;
    write_tensor(i, [&](const void* data, size_t n) {
      DSV3_CHECK(got + n <= t.nbytes(), "[gguf] tensor ", t.name, " was given more than its ", t.nbytes(), " bytes");
      put_bytes(data, n);
      got += n;
    });
    DSV3_CHECK(got == t.nbytes(), "[gguf] tensor ", t.name, " was given ", got, " bytes, not its ", t.nbytes());
    written = t.offset + got;
  }
  put_bytes(zeros.data(), size_t(data_bytes() - written));
  DSV3_CHECK(std::fflush(file.get()) == 0, "[gguf] writing ", path, " failed: ", std::strerror(errno));
}

const GgufValue* GgufFile::find(const std::string& key) const {
  for (const auto& [k, v] : metadata)
    if (k == key) return &v;
  return nullptr;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  for (const GgufTensorInfo& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

GgufFile read_gguf(const std::string& path) {
  Reader r(path);
  GgufFile f;
  f.file_size = r.size();
  const uint32_t magic = r.get<uint32_t>("the magic");
  if (magic != kGgufMagic) r.fail("does not start with \"GGUF\"; it is not a GGUF file");
  f.version = r.get<uint32_t>("the version");
  if (f.version != kGgufVersion) r.fail(cat("is GGUF version ", f.version, "; dsv3 reads version 3"));
  const uint64_t n_tensors = r.get<uint64_t>("the tensor count");
  const uint64_t n_kv = r.get<uint64_t>("the metadata count");
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = r.get_string("a metadata key");
    const uint32_t type = r.get<uint32_t>("a metadata type");
    if (!known_type(type)) r.fail(cat("metadata '", key, "' has unknown type ", type));
    GgufValue v;
    v.type = v.element_type = GgufType(type);
    if (v.type == GgufType::array) {
      const uint32_t element = r.get<uint32_t>("an array type");
      if (!known_type(element)) r.fail(cat("array '", key, "' has unknown element type ", element));
      v.element_type = GgufType(element);
      const uint64_t count = r.get<uint64_t>("an array length");
      const size_t min_size = std::max<size_t>(scalar_size(v.element_type), 8);  // a string is >= 8 bytes
      if (count > (r.size() - r.pos()) / min_size) r.fail(cat("array '", key, "' claims ", count, " elements"));
      for (uint64_t j = 0; j < count; ++j) read_element(r, v.element_type, v, key);
    } else {
      read_element(r, v.type, v, key);
    }
    if (f.find(key) != nullptr) r.fail(cat("metadata key '", key, "' appears twice"));
    if (key == "general.alignment") {
      if (v.type != GgufType::u32 || v.ints[0] <= 0 || (v.ints[0] & (v.ints[0] - 1)) != 0)
        r.fail("general.alignment must be a u32 power of two");
      f.alignment = uint64_t(v.ints[0]);
    }
    f.metadata.emplace_back(std::move(key), std::move(v));
  }
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = r.get_string("a tensor name");
    const uint32_t n_dims = r.get<uint32_t>("a tensor's dimension count");
    if (n_dims < 1 || n_dims > 4) r.fail(cat("tensor ", t.name, " has ", n_dims, " dimensions"));
    for (uint32_t d = 0; d < n_dims; ++d) {
      const int64_t dim = int64_t(r.get<uint64_t>("a tensor dimension"));
      if (dim <= 0) r.fail(cat("tensor ", t.name, " has a dimension of ", dim));
      t.ne.push_back(dim);
    }
    const uint32_t type = r.get<uint32_t>("a tensor type");
    if (type != uint32_t(GgmlType::F32) && type != uint32_t(GgmlType::F16) && type != uint32_t(GgmlType::BF16))
      r.fail(cat("tensor ", t.name, " has ggml type ", type, "; dsv3 reads F32 (0), F16 (1) and BF16 (30)"));
    t.type = GgmlType(type);
    t.offset = r.get<uint64_t>("a tensor offset");
    if (t.offset % f.alignment != 0) r.fail(cat("tensor ", t.name, " offset ", t.offset, " is not aligned"));
    if (f.find_tensor(t.name) != nullptr) r.fail(cat("tensor ", t.name, " appears twice"));
    f.tensors.push_back(std::move(t));
  }
  f.data_offset = align_up(r.pos(), f.alignment);
  std::vector<const GgufTensorInfo*> by_offset;
  for (const GgufTensorInfo& t : f.tensors) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  uint64_t end = 0;
  for (const GgufTensorInfo* t : by_offset) {
    if (t->offset < end) r.fail(cat("tensor ", t->name, " overlaps the tensor before it"));
    end = t->offset + t->nbytes();
    if (f.data_offset + end > f.file_size)
      r.fail(cat("tensor ", t->name, " ends at byte ", f.data_offset + end, ", past the end of the file (",
                 f.file_size, " bytes)"));
  }
  return f;
}

}  // namespace dsv3
