#include "model/rope.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace dsv3 {

namespace {

// YaRN's attention-magnitude correction: 0.1 · m · ln(s) + 1 for s > 1 (SPEC.md §1).
double yarn_mscale(double factor, double m) { return factor <= 1.0 ? 1.0 : 0.1 * m * std::log(factor) + 1.0; }

// The dimension index at which the wavelength of θ_i spans `rotations` turns over the original context.
double correction_dim(double rotations, double dim, double base, double original_len) {
  return dim * std::log(original_len / (rotations * 2.0 * M_PI)) / (2.0 * std::log(base));
}

}  // namespace

RopeFrequencies rope_frequencies(const ModelConfig& config) {
  const int64_t dim = config.qk_rope_head_dim;
  DSV3_CHECK(dim > 0 && dim % 2 == 0, "[rope] qk_rope_head_dim must be even and positive, got ", dim);
  const double base = config.rope_theta;
  const int64_t half = dim / 2;
  RopeFrequencies out;
  out.dim = dim;
  out.inv_freq.resize(size_t(half));
  const RopeScaling& s = config.rope_scaling;
  double low = 0, high = 0;
  if (s.yarn) {
    const double orig = double(s.original_max_position_embeddings);
    low = std::max(std::floor(correction_dim(s.beta_fast, double(dim), base, orig)), 0.0);
    high = std::min(std::ceil(correction_dim(s.beta_slow, double(dim), base, orig)), double(dim - 1));
    if (low == high) high += 0.001;  // avoid a zero-width ramp
    out.cos_sin_scale = float(yarn_mscale(s.factor, s.mscale) / yarn_mscale(s.factor, s.mscale_all_dim));
  }
  for (int64_t i = 0; i < half; ++i) {
    const double extrapolated = 1.0 / std::pow(base, double(2 * i) / double(dim));
    double freq = extrapolated;
    if (s.yarn) {
      // ramp = 0 below `low` (keep θ_i: high-frequency dims), 1 above `high` (θ_i / factor).
      const double ramp = std::clamp((double(i) - low) / (high - low), 0.0, 1.0);
      const double keep = 1.0 - ramp;
      freq = (extrapolated / s.factor) * (1.0 - keep) + extrapolated * keep;
    }
    out.inv_freq[size_t(i)] = float(freq);
  }
  return out;
}

void rope_tables(const RopeFrequencies& rope, int64_t pos, int64_t n, float* cos, float* sin) {
  const int64_t half = rope.dim / 2;
  for (int64_t t = 0; t < n; ++t) {
    // The angle is formed in f32 (position × f32 frequency), as both references do.
    const float p = float(pos + t);
    for (int64_t i = 0; i < half; ++i) {
      const float angle = p * rope.inv_freq[size_t(i)];
      cos[t * half + i] = float(std::cos(double(angle))) * rope.cos_sin_scale;
      sin[t * half + i] = float(std::sin(double(angle))) * rope.cos_sin_scale;
    }
  }
}

void rope_rotate(float* x, const float* cos, const float* sin, int64_t half) {
  for (int64_t i = 0; i < half; ++i) {
    const float a = x[2 * i], b = x[2 * i + 1];
    x[2 * i] = a * cos[i] - b * sin[i];
    x[2 * i + 1] = a * sin[i] + b * cos[i];
  }
}

}  // namespace dsv3
