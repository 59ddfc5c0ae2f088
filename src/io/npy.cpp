#include "io/npy.h"

#include <cstring>
#include <fstream>
#include <regex>

#include "core/error.h"

namespace dsv3 {

namespace {
constexpr char kMagic[] = "\x93NUMPY";
}

void write_npy_f32(const std::string& path, const float* data, const Shape& shape) {
  std::string dims;
  for (size_t i = 0; i < shape.size(); ++i) dims += std::to_string(shape[i]) + (shape.size() == 1 || i + 1 < shape.size() ? "," : "");
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of 64, ending in '\n'.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  DSV3_CHECK(out, "[npy] cannot open ", path, " for writing: check the directory exists and is writable");
  out.write(kMagic, 6);
  const char version[2] = {1, 0};
  out.write(version, 2);
  const uint16_t len = uint16_t(header.size());
  const char len_bytes[2] = {char(len & 0xff), char(len >> 8)};
  out.write(len_bytes, 2);
  out.write(header.data(), std::streamsize(header.size()));
  out.write(reinterpret_cast<const char*>(data), std::streamsize(shape_numel(shape) * sizeof(float)));
  DSV3_CHECK(out.good(), "[npy] failed writing ", path, " (disk full?)");
}

Tensor read_npy_f32(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  DSV3_CHECK(in, "[npy] cannot open ", path);
  char magic[6];
  unsigned char version[2], len_bytes[2];
  in.read(magic, 6);
  in.read(reinterpret_cast<char*>(version), 2);
  in.read(reinterpret_cast<char*>(len_bytes), 2);
  DSV3_CHECK(in && std::memcmp(magic, kMagic, 6) == 0 && version[0] == 1, "[npy] ", path,
             " is not a version-1 .npy file");
  std::string header(size_t(len_bytes[0] | (len_bytes[1] << 8)), '\0');
  in.read(header.data(), std::streamsize(header.size()));
  DSV3_CHECK(in, "[npy] ", path, ": truncated header");
  DSV3_CHECK(header.find("'<f4'") != std::string::npos, "[npy] ", path, ": only float32 ('<f4') is supported");
  DSV3_CHECK(header.find("'fortran_order': False") != std::string::npos, "[npy] ", path,
             ": only C order is supported");
  std::smatch m;
  DSV3_CHECK(std::regex_search(header, m, std::regex("'shape': \\(([0-9, ]*)\\)")), "[npy] ", path,
             ": no shape in header");
  Shape shape;
  const std::string dims = m[1];
  const std::regex number("[0-9]+");
  for (std::sregex_iterator it(dims.begin(), dims.end(), number), end; it != end; ++it)
    shape.push_back(std::stoll(it->str()));
  Tensor t(DType::F32, shape);
  in.read(static_cast<char*>(t.data()), std::streamsize(t.nbytes()));
  DSV3_CHECK(in, "[npy] ", path, ": data shorter than shape ", shape_str(shape));
  return t;
}

}  // namespace dsv3
