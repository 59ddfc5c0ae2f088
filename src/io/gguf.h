// GGUF version 3, llama.cpp's model file format (ggml's docs/gguf.md):
//
//   header        "GGUF" (u32 magic 0x46554747), u32 version = 3, u64 tensor count, u64 metadata count
//   metadata      per entry: string key, u32 value type, value (strings are u64 length + bytes without a
//                 terminator; arrays are u32 element type, u64 count, elements)
//   tensor infos  per tensor: string name, u32 n_dims, u64 ne[n_dims] (ne[0] innermost, i.e. the reverse
//                 of a row-major shape), u32 ggml type, u64 offset from the start of the data section
//   padding       zeros up to a multiple of general.alignment (32 unless the metadata says otherwise)
//   data          each tensor at its offset, every offset a multiple of the alignment
// All numbers are little-endian. GgufWriter streams a file in one pass: metadata and tensor infos are
// declared first, then each tensor's bytes are produced in order by a callback, so a tensor never has
// to be held whole in memory. read_gguf reads back everything but the tensor data (tests, checks).
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3 {

enum class GgufType : uint32_t {
  u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7, string = 8, array = 9,
  u64 = 10, i64 = 11, f64 = 12,
};
std::string_view gguf_type_name(GgufType type);

// The tensor element types dsv3 writes (ggml's enum ggml_type values).
enum class GgmlType : uint32_t { F32 = 0, F16 = 1, BF16 = 30 };
size_t ggml_type_size(GgmlType type);
std::string_view ggml_type_name(GgmlType type);

inline constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian u32
inline constexpr uint32_t kGgufVersion = 3;
inline constexpr uint64_t kGgufDefaultAlignment = 32;

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // ne[0] innermost (contiguous); a row-major [rows, cols] matrix is {cols, rows}
  GgmlType type = GgmlType::F32;
  uint64_t offset = 0;  // from the start of the data section
  int64_t numel() const;
  uint64_t nbytes() const;
};

// Receives a tensor's bytes in order: write(data, n) may be called any number of times, and the total
// must be exactly the tensor's nbytes().
using GgufByteSink = std::function<void(const void* data, size_t n)>;

class GgufWriter {
 public:
  // Metadata, written in the order added. A key may be added only once.
  void add_u8(const std::string& key, uint8_t value);
  void add_i8(const std::string& key, int8_t value);
  void add_u16(const std::string& key, uint16_t value);
  void add_i16(const std::string& key, int16_t value);
  void add_u32(const std::string& key, uint32_t value);
  void add_i32(const std::string& key, int32_t value);
  void add_u64(const std::string& key, uint64_t value);
  void add_i64(const std::string& key, int64_t value);
  void add_f32(const std::string& key, float value);
  void add_f64(const std::string& key, double value);
  void add_bool(const std::string& key, bool value);
  void add_string(const std::string& key, const std::string& value);
  void add_array(const std::string& key, std::span<const uint32_t> values);
  void add_array(const std::string& key, std::span<const int32_t> values);
  void add_array(const std::string& key, std::span<const float> values);
  void add_array(const std::string& key, std::span<const std::string> values);
  // Sets general.alignment (a power of two) and aligns the data with it; default 32, not written.
  void set_alignment(uint32_t alignment);

  // Declares the next tensor; its data comes from write()'s callback in declaration order.
  void add_tensor(const std::string& name, std::vector<int64_t> ne, GgmlType type);
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  uint64_t data_bytes() const;  // the data section's size, padding included

  // Writes the file: header, metadata, tensor infos, then for each tensor i (in order)
  // write_tensor(i, sink), which must give the sink exactly tensors()[i].nbytes() bytes.
  void write(const std::string& path, const std::function<void(size_t, const GgufByteSink&)>& write_tensor) const;

 private:
  void add_entry(const std::string& key, GgufType type, std::string payload);
  struct Entry {
    std::string key;
    GgufType type;
    std::string payload;  // the encoded value (for arrays: element type, count, elements)
  };
  std::vector<Entry> entries_;
  std::vector<GgufTensorInfo> tensors_;
  uint64_t alignment_ = kGgufDefaultAlignment;
};

// A metadata value as read back. Numbers of every integer type land in `ints` (u64 values above
// INT64_MAX wrap), f32/f64 in `floats`, bool in `ints` (0/1), strings in `strings`; a scalar holds one
// element, an array as many as it has.
struct GgufValue {
  GgufType type = GgufType::u8;        // GgufType::array for arrays
  GgufType element_type = GgufType::u8;  // arrays: the elements' type; scalars: same as type
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;
  size_t size() const;
};

struct GgufFile {
  uint32_t version = 0;
  uint64_t alignment = kGgufDefaultAlignment;
  std::vector<std::pair<std::string, GgufValue>> metadata;  // in file order
  std::vector<GgufTensorInfo> tensors;
  uint64_t data_offset = 0;  // file offset of the data section
  uint64_t file_size = 0;

  const GgufValue* find(const std::string& key) const;  // nullptr when absent
  const GgufTensorInfo* find_tensor(const std::string& name) const;
};

// Reads and validates the header, metadata and tensor infos of a GGUF file (not the tensor data):
// magic, version 3, known types, aligned offsets, tensors inside the file and not overlapping.
// Throws dsv3::Error naming the file and what is wrong.
GgufFile read_gguf(const std::string& path);

}  // namespace dsv3
