#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "core/error.h"
#include "io/npy.h"

using namespace dsv3;

TEST(Npy, RoundTripAndHeaderAlignment) {
  const std::string path = ::testing::TempDir() + "/dsv3_npy_roundtrip.npy";
  std::vector<float> data(6);
  for (size_t i = 0; i < data.size(); ++i) data[i] = float(i) * 0.5f - 1.0f;
  write_npy_f32(path, data.data(), {2, 3});
  Tensor t = read_npy_f32(path);
  ASSERT_EQ(t.shape(), (Shape{2, 3}));
  for (size_t i = 0; i < data.size(); ++i) EXPECT_EQ(t.as<float>()[i], data[i]);
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  EXPECT_EQ((size_t(in.tellg()) - data.size() * 4) % 64, 0u);  // data starts 64-byte aligned
  std::remove(path.c_str());
}

TEST(Npy, OneDimensionalShapeHasTrailingComma) {
  const std::string path = ::testing::TempDir() + "/dsv3_npy_1d.npy";
  float v[3] = {1, 2, 3};
  write_npy_f32(path, v, {3});
  std::ifstream in(path, std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), {});
  EXPECT_NE(all.find("'shape': (3,)"), std::string::npos);
  EXPECT_EQ(read_npy_f32(path).shape(), (Shape{3}));
  std::remove(path.c_str());
}

TEST(Npy, RejectsGarbage) {
  const std::string path = ::testing::TempDir() + "/dsv3_npy_bad.npy";
  std::ofstream(path) << "not a numpy file at all";
  EXPECT_THROW(read_npy_f32(path), Error);
  std::remove(path.c_str());
}
