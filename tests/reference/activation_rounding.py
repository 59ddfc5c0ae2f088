"""Where dsv3's inference rounds activations, for each `--precision`, emulated on float64 values.

`dsv3 logits/generate/perplexity --precision` (Precision in src/ops/linear.h) decides what the input of
each projection is rounded to before it is multiplied by the stored weight; everything else (norms,
RoPE, the attention core, SwiGLU, the router and the sums) stays in float32 in every mode. The rounding
points, as src/model/*.cpp and src/ops/cpu/linear*.cpp place them:

  f32   nothing is rounded.
  bf16  the input of every projection (MLA q_a/q_b/q_proj, kv_a, kv_b, o_proj; dense, expert and
        shared-expert gate/up/down; MTP eh_proj; output heads) is rounded to BF16, nearest even. Not
        the router gate: moe.cpp computes the router logits with f32 activations. Not kv_b_proj in the
        absorbed attention form dsv3 uses for chunks of fewer than 32 tokens (mla.cpp
        absorbed_attention multiplies the unrounded f32 query and latent by an f32 copy of kv_b_proj);
        its naive form and its prefill GEMM form (32 tokens or more) round kv_b_proj's input like any
        other.
  fp8   the input of every projection whose weight is stored as F8_E4M3 is quantized per 1x128 tile
        (one scale per token per 128 input channels, the last tile partial): s = max(amax, 1e-4) / 448
        in float32, code = E4M3(x / s) (nearest even, x / s in float32), value = code * s
        (src/ops/fp8.h fp8_scale, quantize_fp8, linear_fp8.cpp). Inputs of projections stored in
        other dtypes (the heads; every projection of a BF16 checkpoint) are rounded to BF16 as above.

The emulation first rounds the float64 value to float32, as dsv3 holds it, so that BF16 rounding is
the same double rounding (f32, then BF16) that dsv3 performs. It reproduces dsv3's rounded values
exactly when it is given dsv3's float32 inputs; given the reference's float64 inputs it differs only
where the two lie on either side of a rounding boundary.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np as st  # noqa: E402  (re-executes with an interpreter that has numpy)

np = st.np

PRECISIONS = ("f32", "bf16", "fp8")
FP8_TILE = 128
FP8_AMAX_FLOOR = np.float32(1e-4)  # src/ops/quantize.h kFp8AmaxFloor


def quantize_fp8_tiles(x):
    """x [..., cols] -> the values dsv3's dynamic FP8 activations carry: per 1x128 tile of each row,
    s = max(amax, 1e-4) / 448 and E4M3(x / s) * s, with the scale and the division in float32."""
    x32 = np.asarray(x, dtype=np.float64).astype(np.float32)
    out = np.empty(x32.shape, dtype=np.float64)
    for c0 in range(0, x32.shape[-1], FP8_TILE):
        tile = x32[..., c0:c0 + FP8_TILE]
        amax = np.max(np.abs(tile), axis=-1, keepdims=True)
        scale = np.maximum(amax, FP8_AMAX_FLOOR) / np.float32(st.E4M3_MAX)
        codes = st.float_to_e4m3_bits((tile / scale).astype(np.float64))
        out[..., c0:c0 + FP8_TILE] = st.E4M3_TABLE[codes] * scale.astype(np.float64)
    return out


class ActivationRounding:
    """What a projection's input is rounded to: `precision` is dsv3's (f32, bf16, fp8);
    `kv_b_exact` leaves kv_b_proj's input unrounded, as dsv3's absorbed attention form does."""

    def __init__(self, precision="f32", kv_b_exact=False):
        if precision not in PRECISIONS:
            raise ValueError(f"[rounding] precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.precision = precision
        self.kv_b_exact = kv_b_exact

    def round_input(self, x, fp8_weight):
        """x as dsv3 feeds it to a projection whose weight is (fp8_weight) or is not stored as F8_E4M3."""
        if self.precision == "f32":
            return x
        if self.precision == "fp8" and fp8_weight:
            return quantize_fp8_tiles(x)
        return st.round_to_bf16(x)

    def for_kv_b(self):
        """The rounding of kv_b_proj's input: none in the absorbed form."""
        return EXACT if self.kv_b_exact else self


EXACT = ActivationRounding()
