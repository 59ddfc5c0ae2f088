#include "core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <sstream>

#include "core/error.h"

namespace dsv3 {

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_str(const Shape& shape) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

Tensor::Tensor(DType dtype, Shape shape) : dtype_(dtype), shape_(std::move(shape)) {
  for (int64_t d : shape_) DSV3_CHECK(d >= 0, "[Tensor] negative dimension in shape ", shape_str(shape_));
  const size_t bytes = nbytes();
  const size_t rounded = (bytes + 63) / 64 * 64;
  data_ = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  DSV3_CHECK(data_ != nullptr, "[Tensor] out of memory allocating ", bytes, " bytes for shape ",
             shape_str(shape_));
  std::memset(data_, 0, rounded == 0 ? 64 : rounded);
}

Tensor::~Tensor() { std::free(data_); }

Tensor::Tensor(Tensor&& other) noexcept
    : dtype_(other.dtype_), shape_(std::move(other.shape_)), data_(other.data_) {
  other.data_ = nullptr;
  other.shape_.clear();
}

Tensor& Tensor::operator=(Tensor&& other) noexcept {
  if (this != &other) {
    std::free(data_);
    dtype_ = other.dtype_;
    shape_ = std::move(other.shape_);
    data_ = other.data_;
    other.data_ = nullptr;
    other.shape_.clear();
  }
  return *this;
}

Tensor to_f32(const TensorView& v) {
  Tensor out(DType::F32, v.shape);
  float* dst = out.as<float>();
  const int64_t n = v.numel();
  for (int64_t i = 0; i < n; ++i) dst[i] = load_as_f32(v.data, v.dtype, size_t(i));
  return out;
}

}  // namespace dsv3
