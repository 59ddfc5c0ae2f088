#include "model/mtp.h"

#include "ops/ops.h"

namespace dsv3 {

void mtp_input(const ModelConfig& config, const MtpWeights& w, const float* emb, const float* hidden, int64_t n,
               Precision precision, float* concat, float* out) {
  const int64_t H = config.hidden_size;
  const float eps = float(config.rms_norm_eps);
  for (int64_t t = 0; t < n; ++t) {
    rmsnorm(emb + t * H, w.enorm.as<float>(), eps, concat + t * 2 * H, 1, H);
    rmsnorm(hidden + t * H, w.hnorm.as<float>(), eps, concat + t * 2 * H + H, 1, H);
  }
  linear(w.eh_proj, concat, out, n, precision);
}

}  // namespace dsv3
