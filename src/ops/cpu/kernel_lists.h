// Internal to src/ops: each kernel family's source file says which implementations it compiled (best
// first, the portable one last); src/ops/cpu/kernels.cpp keeps which one is in use (ops/kernels.h).
#pragma once

#include <string>
#include <vector>

#include "ops/kernels.h"

namespace dsv3::cpu {

std::vector<std::string> gemv_kernel_list();         // gemv.cpp
std::vector<std::string> fp8_convert_kernel_list();  // fp8_convert.cpp
std::vector<std::string> fp8_gemm_kernel_list();     // fp8_gemm.cpp
std::vector<std::string> bf16_matmul_kernel_list();  // gemm.cpp (asks oneDNN whether it has a bf16 matmul)

}  // namespace dsv3::cpu
