// GGUF v3 writer and reader (io/gguf.h).
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "io/gguf.h"
#include "test_support.h"

namespace dsv3 {
namespace {

using testing::error_of;
using testing::TempDir;

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Writes every tensor of `writer` with byte k of tensor i equal to (i * 31 + k) % 251.
void write_pattern(const GgufWriter& writer, const std::string& path) {
  writer.write(path, [&](size_t i, const GgufByteSink& sink) {
    std::string bytes(size_t(writer.tensors()[i].nbytes()), '\0');
    for (size_t k = 0; k < bytes.size(); ++k) bytes[k] = char((i * 31 + k) % 251);
    sink(bytes.data(), bytes.size() / 2);  // in two pieces
    sink(bytes.data() + bytes.size() / 2, bytes.size() - bytes.size() / 2);
  });
}

template <typename T>
void append(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

// The byte layout of gguf.md, spelled out for one metadata entry and one tensor.
TEST(Gguf, ExactBytesOfASmallFile) {
  TempDir dir("gguf_bytes");
  GgufWriter w;
  w.add_u32("a", 7);
  w.add_tensor("t", {3}, GgmlType::F32);
  const float data[3] = {1.0f, 2.0f, 3.0f};
  w.write(dir.sub("f.gguf"), [&](size_t, const GgufByteSink& sink) { sink(data, sizeof(data)); });

  std::string expected = "GGUF";
  append<uint32_t>(expected, 3);  // version
  append<uint64_t>(expected, 1);  // tensors
  append<uint64_t>(expected, 1);  // metadata entries
  append<uint64_t>(expected, 1);
  expected += "a";
  append<uint32_t>(expected, 4);  // u32
  append<uint32_t>(expected, 7);
  append<uint64_t>(expected, 1);
  expected += "t";
  append<uint32_t>(expected, 1);  // n_dims
  append<uint64_t>(expected, 3);  // ne[0]
  append<uint32_t>(expected, 0);  // F32
  append<uint64_t>(expected, 0);  // offset
  ASSERT_EQ(expected.size(), 74u);
  expected.resize(96, '\0');  // the data section starts 32-aligned
  expected.append(reinterpret_cast<const char*>(data), sizeof(data));
  expected.resize(128, '\0');  // and is padded to a multiple of 32
  EXPECT_EQ(read_bytes(dir.sub("f.gguf")), expected);
}

TEST(Gguf, RoundTripsEveryTypeAndAlignment) {
  TempDir dir("gguf_roundtrip");
  GgufWriter w;
  w.set_alignment(64);
  w.add_u8("u8", 250);
  w.add_i8("i8", -100);
  w.add_u16("u16", 65000);
  w.add_i16("i16", -30000);
  w.add_u32("u32", 4000000000u);
  w.add_i32("i32", -2000000000);
  w.add_u64("u64", 1ull << 40);
  w.add_i64("i64", -(1ll << 40));
  w.add_f32("f32", 0.1f);
  w.add_f64("f64", 0.1);
  w.add_bool("yes", true);
  w.add_bool("no", false);
  w.add_string("s", "na\xc3\xafve \xe5\x8c\x97");
  w.add_string("empty", "");
  const std::vector<uint32_t> u = {1, 2, 4000000000u};
  const std::vector<int32_t> i = {-1, 0, 5};
  const std::vector<float> f = {0.5f, -2.0f};
  const std::vector<std::string> strings = {"a b", "", "Ġthe"};
  w.add_array("au32", std::span<const uint32_t>(u));
  w.add_array("ai32", std::span<const int32_t>(i));
  w.add_array("af32", std::span<const float>(f));
  w.add_array("astr", std::span<const std::string>(strings));
  w.add_tensor("odd", {3, 5}, GgmlType::BF16);  // 30 bytes: the next offset is padded
  w.add_tensor("blk.0.x", {31, 2, 3}, GgmlType::F32);
  w.add_tensor("h", {33}, GgmlType::F16);
  write_pattern(w, dir.sub("f.gguf"));

  const GgufFile g = read_gguf(dir.sub("f.gguf"));
  EXPECT_EQ(g.version, 3u);
  EXPECT_EQ(g.alignment, 64u);
  ASSERT_EQ(g.metadata.size(), 19u);
  EXPECT_EQ(g.metadata[0].first, "general.alignment");  // the order they were added in
  auto int_of = [&](const char* key, GgufType type) {
    const GgufValue* v = g.find(key);
    EXPECT_TRUE(v != nullptr && v->type == type && v->ints.size() == 1) << key;
    return v && !v->ints.empty() ? v->ints[0] : 0;
  };
  EXPECT_EQ(int_of("u8", GgufType::u8), 250);
  EXPECT_EQ(int_of("i8", GgufType::i8), -100);
  EXPECT_EQ(int_of("u16", GgufType::u16), 65000);
  EXPECT_EQ(int_of("i16", GgufType::i16), -30000);
  EXPECT_EQ(int_of("u32", GgufType::u32), 4000000000ll);
  EXPECT_EQ(int_of("i32", GgufType::i32), -2000000000);
  EXPECT_EQ(int_of("u64", GgufType::u64), 1ll << 40);
  EXPECT_EQ(int_of("i64", GgufType::i64), -(1ll << 40));
  EXPECT_EQ(int_of("yes", GgufType::boolean), 1);
  EXPECT_EQ(int_of("no", GgufType::boolean), 0);
  EXPECT_EQ(g.find("f32")->floats.at(0), double(0.1f));
  EXPECT_EQ(g.find("f64")->floats.at(0), 0.1);
  EXPECT_EQ(g.find("s")->strings.at(0), "na\xc3\xafve \xe5\x8c\x97");
  EXPECT_EQ(g.find("empty")->strings.at(0), "");
  const GgufValue* au = g.find("au32");
  ASSERT_TRUE(au && au->type == GgufType::array && au->element_type == GgufType::u32);
  EXPECT_EQ(au->ints, (std::vector<int64_t>{1, 2, 4000000000ll}));
  EXPECT_EQ(g.find("ai32")->ints, (std::vector<int64_t>{-1, 0, 5}));
  EXPECT_EQ(g.find("af32")->floats, (std::vector<double>{0.5, -2.0}));
  EXPECT_EQ(g.find("astr")->element_type, GgufType::string);
  EXPECT_EQ(g.find("astr")->strings, strings);
  EXPECT_EQ(g.find("missing"), nullptr);

  ASSERT_EQ(g.tensors.size(), 3u);
  EXPECT_EQ(g.data_offset % 64, 0u);
  const std::string bytes = read_bytes(dir.sub("f.gguf"));
  for (size_t t = 0; t < g.tensors.size(); ++t) {
    const GgufTensorInfo& info = g.tensors[t];
    EXPECT_EQ(info.offset % 64, 0u) << info.name;
    EXPECT_EQ(info.ne, w.tensors()[t].ne);
    EXPECT_EQ(info.type, w.tensors()[t].type);
    for (uint64_t k = 0; k < info.nbytes(); ++k)
      ASSERT_EQ(uint8_t(bytes[size_t(g.data_offset + info.offset + k)]), (t * 31 + k) % 251) << info.name << " " << k;
  }
  EXPECT_EQ(g.tensors[1].offset, 64u);
  EXPECT_EQ(g.find_tensor("h")->nbytes(), 66u);
  EXPECT_EQ(g.file_size, g.data_offset + w.data_bytes());
}

TEST(Gguf, WriterErrorsNameTheProblem) {
  TempDir dir("gguf_errors");
  GgufWriter w;
  w.add_u32("k", 1);
  EXPECT_NE(error_of([&] { w.add_string("k", "again"); }).find("'k' added twice"), std::string::npos);
  EXPECT_NE(error_of([&] { w.set_alignment(48); }).find("not a power of two"), std::string::npos);
  w.add_tensor("t", {4}, GgmlType::F32);
  EXPECT_NE(error_of([&] { w.add_tensor("t", {4}, GgmlType::F32); }).find("added twice"), std::string::npos);
  EXPECT_NE(error_of([&] { w.add_tensor("u", {4, 0}, GgmlType::F32); }).find("dimension of 0"), std::string::npos);
  EXPECT_NE(error_of([&] { w.add_tensor(std::string(64, 'x'), {4}, GgmlType::F32); }).find("1 to 63 bytes"),
            std::string::npos);
  const float four[4] = {};
  EXPECT_NE(error_of([&] {
              w.write(dir.sub("short.gguf"), [&](size_t, const GgufByteSink& sink) { sink(four, 12); });
            }).find("given 12 bytes, not its 16"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              w.write(dir.sub("long.gguf"), [&](size_t, const GgufByteSink& sink) {
                sink(four, 16);
                sink(four, 4);
              });
            }).find("more than its 16 bytes"),
            std::string::npos);
}

TEST(Gguf, ReaderRejectsDamagedFiles) {
  TempDir dir("gguf_damaged");
  GgufWriter w;
  w.add_string("general.architecture", "deepseek2");
  w.add_tensor("t", {8}, GgmlType::F32);
  write_pattern(w, dir.sub("good.gguf"));
  const std::string good = read_bytes(dir.sub("good.gguf"));
  auto error_for = [&](const std::string& bytes) {
    std::ofstream(dir.sub("bad.gguf"), std::ios::binary) << bytes;
    return error_of([&] { read_gguf(dir.sub("bad.gguf")); });
  };
  EXPECT_NE(error_for("GGUX" + good.substr(4)).find("not a GGUF file"), std::string::npos);
  std::string v2 = good;
  v2[4] = 2;
  EXPECT_NE(error_for(v2).find("version 2"), std::string::npos);
  EXPECT_NE(error_for(good.substr(0, 30)).find("truncated"), std::string::npos);
  EXPECT_NE(error_for(good.substr(0, good.size() - 32)).find("past the end of the file"), std::string::npos);
}

}  // namespace
}  // namespace dsv3
