#include "model/mlp.h"

#include "ops/ops.h"

namespace dsv3 {

void mlp_forward(const MlpWeights& w, const float* x, int64_t n, Precision precision, float* gate_buf,
                 float* up_buf, float* out) {
  const int64_t inter = w.gate_proj.rows;
  linear(w.gate_proj, x, gate_buf, n, precision);
  linear(w.up_proj, x, up_buf, n, precision);
  silu_mul(gate_buf, up_buf, gate_buf, n * inter);
  linear(w.down_proj, gate_buf, out, n, precision);
}

}  // namespace dsv3
