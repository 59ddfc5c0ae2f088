#include "ops/linear.h"

namespace dsv3 {

// Placeholder dispatch until the SIMD kernels land: the reference twin.
void linear(const LinearWeight& w, const float* x, float* y, int64_t n_tokens, Precision precision) {
  reference::linear(w, x, y, n_tokens, precision);
}

}  // namespace dsv3
