// Rotary position embedding of the qk_rope_head_dim part of the queries and keys (SPEC.md §1).
//
// Pairing: the rotated pairs are interleaved, (x[2i], x[2i+1]) turned by angle pos·θ_i, exactly as
// DeepSeek's inference/model.py (view_as_complex over the last dim). Hugging Face's modeling_deepseek.py
// reaches the same scores on the same checkpoint weights by another route: it first permutes each
// rope vector (view(..., d/2, 2).transpose -> evens then odds) and then applies rotate_half, which
// pairs i with i + d/2 — i.e. the original (2i, 2i+1). Queries and keys are permuted alike, so the
// dot products agree. Checkpoints therefore need no de-interleaving; we rotate interleaved pairs.
//
// Frequencies: θ_i = base^(-2i/d). With YaRN (rope_scaling type "yarn") the frequencies are blended
// between θ_i / factor (interpolation) and θ_i (extrapolation) by a linear ramp over the dimension
// range given by beta_fast / beta_slow and original_max_position_embeddings. DeepSeek's model.py
// blends only when its max_seq_len exceeds original_seq_len (a run-time choice); Hugging Face's
// DeepseekV3YarnRotaryEmbedding blends whenever the config asks for YaRN. We follow Hugging Face:
// the config alone decides, so results do not depend on a context-length setting.
// HF also multiplies cos/sin by mscale(factor, mscale) / mscale(factor, mscale_all_dim), which is 1 for
// every released DeepSeek config (mscale == mscale_all_dim); we apply it too.
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"

namespace dsv3 {

struct RopeFrequencies {
  int64_t dim = 0;              // qk_rope_head_dim (even)
  std::vector<float> inv_freq;  // [dim / 2], rounded to f32 as the references keep them
  float cos_sin_scale = 1.0f;   // YaRN's mscale ratio (1 for released configs)
};

RopeFrequencies rope_frequencies(const ModelConfig& config);

// cos/sin of the angles for positions [pos, pos + n): both [n, dim / 2].
void rope_tables(const RopeFrequencies& rope, int64_t pos, int64_t n, float* cos, float* sin);

// Rotates one vector of `2 * half` values in place: interleaved pairs (x[2i], x[2i+1]) by the angle
// whose cos/sin are cos[i], sin[i].
void rope_rotate(float* x, const float* cos, const float* sin, int64_t half);

}  // namespace dsv3
