// Dense SwiGLU MLP (SPEC.md §1): down(silu(gate(x)) ⊙ up(x)). Also every routed and shared expert.
#pragma once

#include <cstdint>

#include "model/weights.h"
#include "ops/linear.h"

namespace dsv3 {

// x: [n, H] -> out: [n, H]. gate_buf, up_buf: scratch of [n, inter] each (inter = w.gate_proj.rows).
void mlp_forward(const MlpWeights& w, const float* x, int64_t n, Precision precision, float* gate_buf,
                 float* up_buf, float* out);

}  // namespace dsv3
