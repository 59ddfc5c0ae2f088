// NumPy .npy files (format version 1.0), the interchange format of `dsv3 logits`.
#pragma once

#include <string>

#include "core/tensor.h"

namespace dsv3 {

// Writes a little-endian float32 array of the given shape ("<f4", C order).
void write_npy_f32(const std::string& path, const float* data, const Shape& shape);
// Reads a float32 C-order .npy file; errors name the file and what is unsupported.
Tensor read_npy_f32(const std::string& path);

}  // namespace dsv3
