// safetensors reader/writer (src/io/safetensors.h): round trips, sharding, and every corruption the
// reader must reject with an error naming the file and tensor instead of crashing.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/safetensors.h"

using namespace dsv3;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("dsv3_st_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  static void write_bytes(const std::string& p, const std::string& bytes) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
  }
  static std::string read_bytes(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  static std::string u64(uint64_t v) {
    std::string s(8, '\0');
    std::memcpy(s.data(), &v, 8);
    return s;
  }
  // A file with the given header text (its true length) and `data_bytes` bytes of data.
  std::string write_file(const std::string& name, const std::string& header, size_t data_bytes) {
    const std::string p = path(name);
    write_bytes(p, u64(header.size()) + header + std::string(data_bytes, '\x11'));
    return p;
  }

  // Opening `p` must throw a dsv3::Error whose message contains every string in `parts`.
  static void expect_open_error(const std::string& p, std::initializer_list<std::string> parts,
                                const std::string& label) {
    try {
      SafetensorsFile f(p);
      ADD_FAILURE() << label << ": opened without error";
    } catch (const Error& e) {
      const std::string msg = e.what();
      for (const std::string& part : parts)
        EXPECT_NE(msg.find(part), std::string::npos) << label << ": '" << part << "' not in: " << msg;
    }
  }

  fs::path dir_;
};

// Header entries for a valid two-tensor file: a F32 [2,2] at [0,16), b BF16 [4] at [16,24).
const char* kEntryA = R"("a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]})";

std::string header_with_b(const std::string& b_entry) { return std::string("{") + kEntryA + ", " + b_entry + "}"; }

template <typename T>
std::vector<T> iota_values(size_t n, T start) {
  std::vector<T> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = T(start + T(i));
  return v;
}

}  // namespace

TEST_F(SafetensorsTest, RoundTripsEveryDtype) {
  const auto f32 = iota_values<float>(15, 0.5f);
  const auto f64 = iota_values<double>(2, -3.25);
  const auto i64 = iota_values<int64_t>(3, -1);
  const auto i32 = iota_values<int32_t>(1, 42);
  const std::vector<uint16_t> bf16 = {0x3F80, 0xBF80, 0x7F80, 0x0001, 0x4000, 0x1234, 0xFFFF};
  const std::vector<uint16_t> f16 = {0x3C00, 0xBC00, 0x7C00, 0x0001, 0x4000, 0x1234};
  Tensor e4m3(DType::F8_E4M3, {129});
  for (int i = 0; i < 129; ++i) e4m3.as<uint8_t>()[i] = uint8_t(i * 2 + 1);
  const float scalar = 7.0f;

  SafetensorsWriter w;
  w.add("f32", DType::F32, {3, 5}, f32.data());
  w.add("f64", DType::F64, {2}, f64.data());
  w.add("i64", DType::I64, {3}, i64.data());
  w.add("i32", DType::I32, {1, 1, 1}, i32.data());
  w.add("bf16", DType::BF16, {7}, bf16.data());
  w.add("f16", DType::F16, {2, 3}, f16.data());
  w.add("fp8", std::move(e4m3));
  w.add("scalar", DType::F32, {}, &scalar);
  w.add("empty", DType::BF16, {0, 4}, nullptr);
  w.set_metadata("producer", "dsv3-test");
  const std::string p = path("all.safetensors");
  w.write_file(p);
  {
    SafetensorsWriter dup;
    dup.add("x", DType::F32, {1}, f32.data());
    dup.add("x", DType::F32, {2}, f32.data());
    EXPECT_THROW(dup.write_file(path("dup.safetensors")), Error);
    EXPECT_THROW(dup.write_sharded(path("dup"), 4), Error);
    EXPECT_FALSE(fs::exists(path("dup.safetensors")));
  }
  EXPECT_FALSE(fs::exists(p + ".partial"));

  const std::string bytes = read_bytes(p);
  uint64_t header_len;
  std::memcpy(&header_len, bytes.data(), 8);
  EXPECT_EQ((8 + header_len) % 8, 0u) << "data section must start 8-byte aligned";

  SafetensorsFile f(p);
  EXPECT_EQ(f.entries().size(), 9u);
  EXPECT_EQ(f.metadata().at("producer"), "dsv3-test");
  EXPECT_EQ(f.metadata().at("format"), "pt");
  auto check = [&](const std::string& name, DType dt, const Shape& shape, const void* expected) {
    const TensorView v = f.get(name);
    EXPECT_EQ(v.dtype, dt) << name;
    EXPECT_EQ(v.shape, shape) << name;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(v.data) % dtype_size(dt), 0u) << name << " misaligned";
    if (v.nbytes() > 0) {
      EXPECT_EQ(std::memcmp(v.data, expected, v.nbytes()), 0) << name;
    }
  };
  check("f32", DType::F32, {3, 5}, f32.data());
  check("f64", DType::F64, {2}, f64.data());
  check("i64", DType::I64, {3}, i64.data());
  check("i32", DType::I32, {1, 1, 1}, i32.data());
  check("bf16", DType::BF16, {7}, bf16.data());
  check("f16", DType::F16, {2, 3}, f16.data());
  check("scalar", DType::F32, {}, &scalar);
  check("empty", DType::BF16, {0, 4}, nullptr);
  const TensorView fp8 = f.get("fp8");
  EXPECT_EQ(fp8.shape, (Shape{129}));
  for (int i = 0; i < 129; ++i) ASSERT_EQ(fp8.as<uint8_t>()[i], uint8_t(i * 2 + 1));

  // The header is sorted JSON with the documented fields.
  const json header = json::parse(bytes.substr(8, header_len));
  EXPECT_EQ(header.at("f16").at("dtype"), "F16");
  EXPECT_EQ(header.at("scalar").at("shape"), json::array());
}

TEST_F(SafetensorsTest, ShardedRoundTripWithIndex) {
  std::vector<std::vector<float>> data;
  SafetensorsWriter w;
  for (int i = 0; i < 12; ++i) data.push_back(iota_values<float>(250, float(i * 1000)));
  for (int i = 0; i < 12; ++i) w.add("t." + std::to_string(i), DType::F32, {250}, data[size_t(i)].data());
  const std::string out = path("ckpt");
  w.write_sharded(out, 3500);  // three 1000-byte tensors per shard -> 4 shards

  for (int s = 1; s <= 4; ++s)
    EXPECT_TRUE(fs::exists(out + "/model-0000" + std::to_string(s) + "-of-00004.safetensors")) << s;
  EXPECT_FALSE(fs::exists(out + "/model.safetensors"));
  const json index = json::parse(read_bytes(out + "/model.safetensors.index.json"));
  EXPECT_EQ(index.at("metadata").at("total_size"), 12000);
  EXPECT_EQ(index.at("weight_map").size(), 12u);
  EXPECT_EQ(index.at("weight_map").at("t.0"), "model-00001-of-00004.safetensors");
  EXPECT_EQ(index.at("weight_map").at("t.11"), "model-00004-of-00004.safetensors");

  const TensorStore store = TensorStore::open_dir(out);
  EXPECT_EQ(store.names().size(), 12u);
  for (int i = 0; i < 12; ++i) {
    const std::string name = "t." + std::to_string(i);
    const TensorView v = store.get(name, {250});
    EXPECT_EQ(std::memcmp(v.data, data[size_t(i)].data(), 1000), 0) << name;
    EXPECT_EQ(fs::path(store.file_of(name)).filename().string(), index.at("weight_map").at(name).get<std::string>());
  }

  // Rewriting as one shard produces model.safetensors and drops the stale index.
  SafetensorsWriter small;
  small.add("only", DType::F32, {250}, data[0].data());
  small.write_sharded(out, 1 << 20);
  EXPECT_TRUE(fs::exists(out + "/model.safetensors"));
  EXPECT_FALSE(fs::exists(out + "/model.safetensors.index.json"));
  const TensorStore single = TensorStore::open_dir(out);
  EXPECT_EQ(single.names(), std::vector<std::string>{"only"});
  EXPECT_EQ(single.dir(), out);
  for (const auto& entry : fs::directory_iterator(out)) EXPECT_NE(entry.path().extension(), ".partial") << entry.path();
}

// The in-memory copy (huge pages) serves the same bytes as the mapping, for every shard.
TEST_F(SafetensorsTest, LoadIntoMemoryKeepsEveryTensor) {
  std::vector<std::vector<float>> data;
  SafetensorsWriter w;
  for (int i = 0; i < 5; ++i) data.push_back(iota_values<float>(1000 + 37 * i, float(i * 7)));
  for (int i = 0; i < 5; ++i)
    w.add("t." + std::to_string(i), DType::F32, {int64_t(data[size_t(i)].size())}, data[size_t(i)].data());
  const std::string out = path("ckpt");
  w.write_sharded(out, 9000);
  TensorStore store = TensorStore::open_dir(out);
  EXPECT_TRUE(store.load_into_memory_if_it_fits());
  EXPECT_FALSE(store.load_into_memory_if_it_fits(0.0));  // nothing fits in no memory
  for (int i = 0; i < 5; ++i) {
    const std::string name = "t." + std::to_string(i);
    const TensorView v = store.get(name);
    ASSERT_EQ(v.numel(), int64_t(data[size_t(i)].size())) << name;
    EXPECT_EQ(std::memcmp(v.data, data[size_t(i)].data(), data[size_t(i)].size() * sizeof(float)), 0) << name;
  }
}

TEST_F(SafetensorsTest, OpenDirFallsBackToAllFilesSorted) {
  const float x[2] = {1, 2};
  SafetensorsWriter w1, w2;
  w1.add("x", DType::F32, {2}, x);
  w2.add("y", DType::F32, {1}, x);
  w1.write_file(path("b.safetensors"));
  w2.write_file(path("a.safetensors"));
  const TensorStore store = TensorStore::open_dir(dir_.string());
  EXPECT_EQ(store.names(), (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(store.file_of("y"), path("a.safetensors"));
  const TensorStore one = TensorStore::open_file(path("b.safetensors"));
  EXPECT_TRUE(one.has("x"));
  EXPECT_FALSE(one.has("y"));
  EXPECT_EQ(one.dir(), dir_.string());
}

TEST_F(SafetensorsTest, StoreErrorsNameFileTensorAndShapes) {
  const float x[4] = {1, 2, 3, 4};
  SafetensorsWriter w;
  w.add("model.norm.weight", DType::F32, {2, 2}, x);
  w.write_file(path("model.safetensors"));
  const TensorStore store = TensorStore::open_dir(dir_.string());
  try {
    store.get("model.norm.weight", {4});
    FAIL();
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const char* part : {"model.safetensors", "model.norm.weight", "[2, 2]", "[4]"})
      EXPECT_NE(msg.find(part), std::string::npos) << part << " not in " << msg;
  }
  try {
    store.get("lm_head.weight");
    FAIL();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("lm_head.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find(dir_.string()), std::string::npos) << msg;
  }
  EXPECT_THROW(store.file_of("nope"), Error);
}

TEST_F(SafetensorsTest, DirectoryErrors) {
  auto expect_dir_error = [&](const std::string& d, std::initializer_list<std::string> parts, const char* label) {
    try {
      TensorStore::open_dir(d);
      ADD_FAILURE() << label << ": opened";
    } catch (const Error& e) {
      const std::string msg = e.what();
      for (const std::string& part : parts)
        EXPECT_NE(msg.find(part), std::string::npos) << label << ": '" << part << "' not in " << msg;
    }
  };
  expect_dir_error(path("missing"), {path("missing")}, "no such directory");
  expect_dir_error(dir_.string(), {dir_.string()}, "empty directory");

  const float x[2] = {1, 2};
  SafetensorsWriter w;
  w.add("dup", DType::F32, {2}, x);
  w.write_file(path("one.safetensors"));
  w.write_file(path("two.safetensors"));
  expect_dir_error(dir_.string(), {"dup", "one.safetensors", "two.safetensors"}, "tensor in two files");
  fs::remove(path("two.safetensors"));

  const std::string index = path("model.safetensors.index.json");
  write_bytes(index, R"({"weight_map": {"dup": "one.safetensors", "w": "gone.safetensors"}})");
  expect_dir_error(dir_.string(), {index, "gone.safetensors", "'w'"}, "missing shard");
  write_bytes(index, R"({"weight_map": {"dup": "one.safetensors", "absent": "one.safetensors"}})");
  expect_dir_error(dir_.string(), {"absent", "one.safetensors"}, "tensor not in its shard");
  write_bytes(index, R"({"weight_map": {"dup": "../one.safetensors"}})");
  expect_dir_error(dir_.string(), {index, "../one.safetensors"}, "path outside the directory");
  write_bytes(index, R"({"metadata": {}})");
  expect_dir_error(dir_.string(), {index, "weight_map"}, "no weight_map");
  write_bytes(index, R"({"weight_map": )");
  expect_dir_error(dir_.string(), {index}, "invalid index JSON");
  write_bytes(index, R"({"weight_map": {"dup": "one.safetensors"}})");
  EXPECT_TRUE(TensorStore::open_dir(dir_.string()).has("dup"));
}

TEST_F(SafetensorsTest, RejectsBrokenFilesNamingThePath) {
  std::string p = path("short.safetensors");
  write_bytes(p, "abc");
  expect_open_error(p, {p, "3 bytes"}, "shorter than 8 bytes");
  write_bytes(p, "");
  expect_open_error(p, {p}, "empty file");

  p = path("long_header.safetensors");
  write_bytes(p, u64(1000) + "{}");
  expect_open_error(p, {p, "1000"}, "header length beyond the file");
  write_bytes(p, u64(uint64_t(1) << 40) + "{}");
  expect_open_error(p, {p, "absurd"}, "absurd header length");
  write_bytes(p, u64(~uint64_t(0)) + "{}");
  expect_open_error(p, {p}, "header length 2^64-1");

  expect_open_error(write_file("bad_json.safetensors", "{\"a\": {", 0), {"bad_json.safetensors", "JSON"}, "bad JSON");
  expect_open_error(write_file("empty_header.safetensors", "", 0), {"empty_header.safetensors"}, "empty header");
  expect_open_error(write_file("array.safetensors", "[1, 2]", 0), {"array.safetensors", "object"}, "array header");
  expect_open_error(path("does_not_exist.safetensors"), {"does_not_exist.safetensors"}, "missing file");
  expect_open_error(dir_.string(), {dir_.string()}, "a directory");

  // A valid file for comparison.
  SafetensorsFile ok(write_file(
      "ok.safetensors", header_with_b(R"("b": {"dtype": "BF16", "shape": [4], "data_offsets": [16, 24]})"), 24));
  EXPECT_EQ(ok.entries().size(), 2u);
}

TEST_F(SafetensorsTest, RejectsEveryBrokenEntryNamingFileAndTensor) {
  struct Case {
    const char* label;
    std::string header;
    size_t data;
  };
  const std::vector<Case> cases = {
      {"missing dtype", header_with_b(R"("b": {"shape": [4], "data_offsets": [16, 24]})"), 24},
      {"missing shape", header_with_b(R"("b": {"dtype": "BF16", "data_offsets": [16, 24]})"), 24},
      {"missing data_offsets", header_with_b(R"("b": {"dtype": "BF16", "shape": [4]})"), 24},
      {"dtype not a string", header_with_b(R"("b": {"dtype": 5, "shape": [4], "data_offsets": [16, 24]})"), 24},
      {"unknown dtype", header_with_b(R"("b": {"dtype": "Q4_K", "shape": [4], "data_offsets": [16, 24]})"), 24},
      {"negative dim", header_with_b(R"("b": {"dtype": "BF16", "shape": [-4], "data_offsets": [16, 24]})"), 24},
      {"shape not a list", header_with_b(R"("b": {"dtype": "BF16", "shape": "4", "data_offsets": [16, 24]})"), 24},
      {"fractional dim", header_with_b(R"("b": {"dtype": "BF16", "shape": [4.5], "data_offsets": [16, 24]})"), 24},
      {"huge shape",
       header_with_b(R"("b": {"dtype": "BF16", "shape": [4294967296, 4294967296, 16], "data_offsets": [16, 24]})"), 24},
      {"one offset", header_with_b(R"("b": {"dtype": "BF16", "shape": [4], "data_offsets": [16]})"), 24},
      {"negative offset", header_with_b(R"("b": {"dtype": "BF16", "shape": [4], "data_offsets": [-8, 0]})"), 24},
      {"string offsets", header_with_b(R"("b": {"dtype": "BF16", "shape": [4], "data_offsets": ["16", "24"]})"), 24},
      {"end before begin", header_with_b(R"("b": {"dtype": "BF16", "shape": [4], "data_offsets": [24, 16]})"), 24},
      {"beyond data section", header_with_b(R"("b": {"dtype": "BF16", "shape": [4], "data_offsets": [16, 24]})"), 20},
      {"offsets past the end",
       header_with_b(
           R"("b": {"dtype": "BF16", "shape": [4], "data_offsets": [18446744073709551600, 18446744073709551608]})"),
       24},
      {"size mismatch", header_with_b(R"("b": {"dtype": "BF16", "shape": [4], "data_offsets": [16, 22]})"), 24},
      {"overlap", header_with_b(R"("b": {"dtype": "BF16", "shape": [4], "data_offsets": [8, 16]})"), 24},
      {"entry not an object", header_with_b(R"("b": 7)"), 24},
      {"duplicate key in entry",
       header_with_b(R"("b": {"dtype": "BF16", "dtype": "F32", "shape": [4], "data_offsets": [16, 24]})"), 24},
      {"duplicate tensor",
       header_with_b(
           R"("b": {"dtype": "BF16", "shape": [4], "data_offsets": [16, 24]}, "b": {"dtype": "BF16", "shape": [4], "data_offsets": [16, 24]})"),
       24},
  };
  int i = 0;
  for (const Case& c : cases) {
    const std::string name = "case" + std::to_string(i++) + ".safetensors";
    expect_open_error(write_file(name, c.header, c.data), {name, "'b'"}, c.label);
  }
  // Overlap errors name both tensors.
  expect_open_error(write_file("overlap.safetensors",
                               header_with_b(R"("b": {"dtype": "BF16", "shape": [4], "data_offsets": [8, 16]})"), 24),
                    {"'a'", "'b'"}, "overlap names both");
  expect_open_error(write_file("meta.safetensors", std::string("{") + kEntryA + R"(, "__metadata__": {"k": 1}})", 16),
                    {"meta.safetensors", "__metadata__", "'k'"}, "non-string metadata");
}

// Random corruptions of a valid file: each either opens with every view inside the data section
// or throws dsv3::Error. Any crash, hang or other exception fails the test.
TEST_F(SafetensorsTest, RandomCorruptionNeverCrashes) {
  const auto f32 = iota_values<float>(6, 1.0f);
  const std::vector<uint16_t> bf16 = {1, 2, 3};
  const std::vector<uint8_t> fp8 = {1, 2, 3, 4, 5};
  const auto i64 = iota_values<int64_t>(2, 9);
  SafetensorsWriter w;
  w.add("model.layers.0.weight", DType::F32, {2, 3}, f32.data());
  w.add("model.layers.0.bias", DType::BF16, {3}, bf16.data());
  w.add("model.layers.1.weight", DType::F8_E4M3, {5}, fp8.data());
  w.add("ids", DType::I64, {2}, i64.data());
  w.set_metadata("note", "corruption test");
  const std::string good_path = path("good.safetensors");
  w.write_file(good_path);
  const std::string good = read_bytes(good_path);
  uint64_t good_header;
  std::memcpy(&good_header, good.data(), 8);

  std::mt19937 rng(20240607);
  const std::string json_chars = "0123456789[]{}\",:-. eE";
  int opened = 0, rejected = 0;
  const std::string p = path("mutant.safetensors");
  for (int iter = 0; iter < 300; ++iter) {
    std::string b = good;
    const int n_mutations = 1 + int(rng() % 3);
    for (int m = 0; m < n_mutations && !b.empty(); ++m) {
      switch (rng() % 5) {
        case 0:  // flip one bit anywhere
          b[rng() % b.size()] ^= char(1u << (rng() % 8));
          break;
        case 1:  // replace a header byte with a JSON-significant character
          if (b.size() > 8)
            b[8 + rng() % std::min<size_t>(b.size() - 8, good_header)] = json_chars[rng() % json_chars.size()];
          break;
        case 2:  // truncate
          b.resize(rng() % b.size());
          break;
        case 3: {  // nudge the header length
          if (b.size() >= 8) {
            const uint64_t len = good_header + uint64_t(int64_t(rng() % 33) - 16);
            std::memcpy(b.data(), &len, 8);
          }
          break;
        }
        default: {  // rewrite a digit inside the header (offsets and dims)
          if (b.size() > 8) {
            const size_t at = 8 + rng() % std::min<size_t>(b.size() - 8, good_header);
            if (b[at] >= '0' && b[at] <= '9') b[at] = char('0' + rng() % 10);
          }
          break;
        }
      }
    }
    write_bytes(p, b);
    try {
      SafetensorsFile f(p);
      ++opened;
      ASSERT_GE(b.size(), 8u);
      uint64_t header_len;
      std::memcpy(&header_len, b.data(), 8);
      ASSERT_LE(header_len, b.size() - 8);
      const size_t data_size = b.size() - 8 - header_len;
      for (const auto& [name, e] : f.entries()) {
        ASSERT_LE(e.begin, e.end) << name;
        ASSERT_LE(e.end, data_size) << name;
        const TensorView v = f.get(name);
        ASSERT_EQ(v.nbytes(), e.end - e.begin) << name;
        unsigned sum = 0;  // touch every byte of the view
        for (size_t k = 0; k < v.nbytes(); ++k) sum += static_cast<const uint8_t*>(v.data)[k];
        (void)sum;
      }
    } catch (const Error&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 0);
  EXPECT_GT(opened, 0);  // data-section flips leave a valid file
  EXPECT_EQ(opened + rejected, 300);
}
