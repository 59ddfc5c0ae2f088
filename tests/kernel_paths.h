// Tests over every implementation of kernel families (ops/kernels.h). A fixture derived from
// KernelChoiceTest runs each TEST_P once per (family, implementation) pair of the families it is
// instantiated for — every implementation this build holds and this CPU runs — with that one selected
// for the test's duration and the other families at their defaults. Test names carry the choice
// (Kernels/Fixture.Test/fp8_gemm_avx2_fma), so a run's list shows which paths were exercised.
//
//   class Fp8GemmKernels : public dsv3::testing::KernelChoiceTest {};
//   DSV3_KERNEL_CHOICES(Fp8GemmKernels, KernelFamily::fp8_gemm);
//   TEST_P(Fp8GemmKernels, MatchesTheReference) { ... }
#pragma once

#include <gtest/gtest.h>

#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "ops/kernels.h"

namespace dsv3::testing {

struct KernelChoice {
  KernelFamily family;
  std::string variant;
};

inline std::vector<KernelChoice> kernel_choices(std::initializer_list<KernelFamily> families) {
  std::vector<KernelChoice> choices;
  for (KernelFamily f : families)
    for (const std::string& v : kernel_variants(f)) choices.push_back({f, v});
  return choices;
}

class KernelChoiceTest : public ::testing::TestWithParam<KernelChoice> {
 protected:
  void SetUp() override { selected_.emplace(GetParam().family, GetParam().variant); }
  void TearDown() override { selected_.reset(); }

 private:
  std::optional<ScopedKernel> selected_;
};

inline std::string kernel_choice_name(const ::testing::TestParamInfo<KernelChoice>& info) {
  return std::string(kernel_family_name(info.param.family)) + "_" + info.param.variant;
}

}  // namespace dsv3::testing

#define DSV3_KERNEL_CHOICES(Fixture, ...)                                                                     \
  INSTANTIATE_TEST_SUITE_P(Kernels, Fixture, ::testing::ValuesIn(::dsv3::testing::kernel_choices({__VA_ARGS__})), \
                           ::dsv3::testing::kernel_choice_name)
