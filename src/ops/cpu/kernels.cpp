// The kernel registry (ops/kernels.h): each family's list of implementations, read once from the file
// that compiled them, and the index of the one in use (0, the best, unless a test or benchmark chose).
#include "ops/kernels.h"

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "core/error.h"
#include "ops/cpu/kernel_lists.h"

namespace dsv3 {
namespace {

constexpr size_t kFamilies = std::size(kKernelFamilies);

struct Registry {
  std::array<std::vector<std::string>, kFamilies> variants;
  std::array<std::atomic<int>, kFamilies> active{};
  Registry() {
    variants[size_t(KernelFamily::gemv)] = cpu::gemv_kernel_list();
    variants[size_t(KernelFamily::fp8_convert)] = cpu::fp8_convert_kernel_list();
    variants[size_t(KernelFamily::fp8_gemm)] = cpu::fp8_gemm_kernel_list();
    variants[size_t(KernelFamily::bf16_matmul)] = cpu::bf16_matmul_kernel_list();
    if (const char* env = std::getenv("DSV3_KERNELS")) apply_environment(env);
  }

  // DSV3_KERNELS="family=variant,..." (e.g. gemv=avx2) picks implementations for a whole run, for
  // comparing them in benchmarks and commands. A name this build or CPU lacks is reported and ignored.
  void apply_environment(const std::string& text) {
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, ',')) {
      const size_t eq = item.find('=');
      bool applied = false;
      for (KernelFamily f : kKernelFamilies) {
        if (eq == std::string::npos || item.substr(0, eq) != kernel_family_name(f)) continue;
        const std::vector<std::string>& list = variants[size_t(f)];
        for (size_t i = 0; i < list.size(); ++i)
          if (list[i] == item.substr(eq + 1)) {
            active[size_t(f)].store(int(i), std::memory_order_relaxed);
            applied = true;
          }
      }
      if (!applied)
        std::fprintf(stderr, "[kernels] DSV3_KERNELS: ignoring '%s' (not family=implementation of this build and "
                             "CPU)\n", item.c_str());
    }
  }
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

const char* kernel_family_name(KernelFamily family) {
  switch (family) {
    case KernelFamily::gemv: return "gemv";
    case KernelFamily::fp8_convert: return "fp8_convert";
    case KernelFamily::fp8_gemm: return "fp8_gemm";
    case KernelFamily::bf16_matmul: return "bf16_matmul";
  }
  return "?";
}

const std::vector<std::string>& kernel_variants(KernelFamily family) { return registry().variants[size_t(family)]; }

const std::string& active_kernel(KernelFamily family) {
  Registry& r = registry();
  return r.variants[size_t(family)][size_t(r.active[size_t(family)].load(std::memory_order_relaxed))];
}

void select_kernel(KernelFamily family, const std::string& variant) {
  Registry& r = registry();
  const std::vector<std::string>& list = r.variants[size_t(family)];
  if (variant.empty()) {
    r.active[size_t(family)].store(0, std::memory_order_relaxed);
    return;
  }
  for (size_t i = 0; i < list.size(); ++i)
    if (list[i] == variant) {
      r.active[size_t(family)].store(int(i), std::memory_order_relaxed);
      return;
    }
  std::string names;
  for (const std::string& v : list) names += (names.empty() ? "" : ", ") + v;
  DSV3_FAIL("[kernels] ", kernel_family_name(family), " has no implementation '", variant,
            "' in this build on this CPU; it has: ", names);
}

ScopedKernel::ScopedKernel(KernelFamily family, const std::string& variant)
    : family_(family), previous_(active_kernel(family)) {
  select_kernel(family, variant);
}

ScopedKernel::~ScopedKernel() { select_kernel(family_, previous_); }

}  // namespace dsv3
