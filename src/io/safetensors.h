// safetensors files, read through mmap (no copy) and written for `dsv3 init` and checkpoints.
// Format: 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the data section; offsets are relative to the data section.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace dsv3 {

struct SafetensorsEntry {
  DType dtype;
  Shape shape;
  size_t begin = 0;  // byte offsets into the data section
  size_t end = 0;
};

// One mmapped .safetensors file. Every header field is validated on open (offsets in bounds,
// sizes = numel × dtype size, no overlaps, known dtypes); errors name the file and the tensor.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  bool has(const std::string& name) const { return entries_.count(name) != 0; }
  TensorView get(const std::string& name) const;  // throws naming file and tensor when missing
  const std::map<std::string, SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  size_t mapped_bytes() const { return map_size_; }
  // Replaces the file mapping by a copy in anonymous memory on transparent huge pages where the kernel
  // grants them (2 MB pages: a weight stream crosses a page every 2 MB instead of every 4 KB, which
  // measured ~1.6× faster first passes over MoE experts than the page-cache mapping). Call before any
  // get(): views taken earlier would point into the released mapping. Returns false, keeping the
  // mapping, when the memory cannot be had or the file cannot be read.
  bool load_into_memory();

 private:
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  bool anonymous_ = false;  // map_ is load_into_memory's copy (munmap'd with its rounded size)
  size_t anonymous_size_ = 0;
  const uint8_t* data_section_ = nullptr;
  std::map<std::string, SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a checkpoint directory: `model.safetensors`, or the shards listed by
// `model.safetensors.index.json` (its "weight_map": name -> file), or every *.safetensors file.
class TensorStore {
 public:
  static TensorStore open_dir(const std::string& dir);
  static TensorStore open_file(const std::string& path);

  bool has(const std::string& name) const { return file_of_.count(name) != 0; }
  TensorView get(const std::string& name) const;  // error names the directory and tensor
  // get() plus checks: error names the file, tensor, expected and actual shape.
  TensorView get(const std::string& name, const Shape& expected_shape) const;
  const std::string& file_of(const std::string& name) const;
  std::vector<std::string> names() const;
  const std::string& dir() const { return dir_; }
  // SafetensorsFile::load_into_memory for every file, when they fit in a fraction of this machine's
  // memory (a checkpoint larger than RAM stays mapped, paged in from disk as it is read). Before any
  // get(). Returns whether every file was loaded.
  bool load_into_memory_if_it_fits(double fraction_of_memory = 0.6);

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*> file_of_;
};

// Collects tensors (copied or borrowed) and writes them as one file or as Hugging Face shards.
class SafetensorsWriter {
 public:
  // Borrowed: `data` must stay valid until write.
  void add(const std::string& name, DType dtype, const Shape& shape, const void* data);
  void add(const std::string& name, Tensor tensor);  // owned
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

  void write_file(const std::string& path) const;
  // Writes model-00001-of-0000N.safetensors ... with at most max_shard_bytes each (a tensor is never
  // split) plus model.safetensors.index.json; a single shard is written as model.safetensors.
  void write_sharded(const std::string& dir, size_t max_shard_bytes) const;

 private:
  struct Item {
    std::string name;
    DType dtype;
    Shape shape;
    const void* data;
  };
  std::vector<Item> items_;
  std::vector<Tensor> owned_;
  std::map<std::string, std::string> metadata_;
};

// Writes `contents` to `path` through `path`.partial and a rename (as the writer does for .safetensors),
// so a reader sees the old file, the complete new one, or none — never half a file.
void write_file_atomic(const std::string& path, const std::string& contents);

}  // namespace dsv3
