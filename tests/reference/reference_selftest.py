"""Numeric self-checks of the float64 reference (deepseek_reference.py --self-test).

Each piece is checked against hand-computed values or an independent formulation: FP8/BF16 codes,
128x128 block dequantization with partial edge blocks, safetensors round trips, RMSNorm, RoPE
(complex multiplication, HF's rotate_half layout, relative-position invariance), YaRN frequencies and
softmax scale (hand values for V3 and V2-Lite), the routers (hand cases and a brute-force loop), MLA
(naive vs absorbed form, causality, single token), the emulation of dsv3's activation rounding (FP8
tile grid, scale and error bound; which projections round), and end to end on random checkpoints
written by make_checkpoint.py (single file vs sharded, MTP tensors ignored by the main logits, MTP
logits causal and fed by the final-normed hidden state, FP8 vs plain, correction bias in use).
"""

import json
import math
import os

from activation_rounding import ActivationRounding, quantize_fp8_tiles
from deepseek_reference import (DeepSeekConfig, ForwardOptions, Projection, Weights, apply_rope, attention_softmax_scale,
                                forward_all_logits, linear, mla_forward, mla_forward_absorbed, mla_project,
                                model_logits, rms_norm, rope_amplitude, rope_inverse_frequencies, route, st,
                                yarn_correction_range)

np = st.np

# ---------------------------------------------------------------------------------------------
# Self-test (--self-test): each piece against hand values or an independent formulation
# ---------------------------------------------------------------------------------------------

class _Checks:
    def __init__(self):
        self.count = 0
        self.failures = []

    def close(self, what, got, want, tol=0.0):
        self.count += 1
        got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
        if got.shape != want.shape:
            self.failures.append(f"{what}: shape {got.shape} != {want.shape}")
            return
        err = float(np.max(np.abs(got - want))) if got.size else 0.0
        if not err <= tol:
            self.failures.append(f"{what}: max |diff| {err:.3g} > {tol:.3g}")

    def true(self, what, condition):
        self.count += 1
        if not condition:
            self.failures.append(what)


def _test_fp8_codes(c):
    table = st.E4M3_TABLE
    hand = {0x00: 0.0, 0x01: 2.0 ** -9, 0x07: 7 * 2.0 ** -9, 0x08: 2.0 ** -6, 0x38: 1.0, 0x3C: 1.5,
            0x7E: 448.0, 0xB8: -1.0, 0xFE: -448.0}
    c.close("e4m3 hand-decoded values", [table[k] for k in hand], list(hand.values()))
    c.true("e4m3 0x7F/0xFF are NaN, the other 254 codes finite",
           np.isnan(table[0x7F]) and np.isnan(table[0xFF]) and np.sum(np.isfinite(table)) == 254)
    codes = np.array([k for k in range(256) if k not in (0x7F, 0xFF, 0x80)], dtype=np.uint8)
    c.true("e4m3 encode(decode(code)) == code", np.array_equal(st.float_to_e4m3_bits(table[codes]), codes))
    # ties go to the even code: 1.0625 is halfway 1.0 (0x38) / 1.125 (0x39); 1.1875 halfway 0x39 / 0x3A
    got = st.float_to_e4m3_bits([1.0625, 1.1875, -1.0625, 1000.0, -1000.0, 1.07])
    c.true("e4m3 rounding ties-to-even and saturation",
           got.tolist() == [0x38, 0x3A, 0xB8, 0x7E, 0xFE, 0x39])
    c.close("e5m2 hand-decoded values", st.E5M2_TABLE[[0x3C, 0x7B, 0x01]], [1.0, 57344.0, 2.0 ** -16])
    c.true("e5m2 0x7C is +inf", np.isposinf(st.E5M2_TABLE[0x7C]))


def _test_bf16(c):
    got = st.float_to_bf16_bits([1.0, -2.0, 1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8, 1 + 2.0 ** -8 + 2.0 ** -20])
    c.true("bf16 encode: exact values, ties to even, above-tie rounds up",
           got.tolist() == [0x3F80, 0xC000, 0x3F80, 0x3F82, 0x3F81])
    bits = np.random.default_rng(1).integers(0, 0x7F80, 1000).astype(np.uint16)
    c.true("bf16 decode/encode round trip", np.array_equal(st.float_to_bf16_bits(st.bf16_to_float32(bits)), bits))


def _test_activation_rounding(c):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 300)) * np.exp(rng.uniform(-6, 6, (5, 1)))  # 300 = two 128-tiles + 44
    x[4, 128:256] = 0.0
    out = quantize_fp8_tiles(x)
    ok_grid = ok_bound = ok_amax = True
    for r in range(5):
        for c0 in range(0, 300, 128):
            tile = x[r, c0:c0 + 128].astype(np.float32)
            scale = float(np.float32(max(np.max(np.abs(tile)), np.float32(1e-4))) / np.float32(448))
            got = out[r, c0:c0 + 128]
            ok_grid &= bool(np.all(np.isin(got / scale, st.E4M3_TABLE)))
            ok_bound &= bool(np.all(np.abs(got - tile) <= np.abs(tile) * 2.0 ** -4 + scale * 2.0 ** -10))
            if np.any(tile != 0):
                ok_amax &= bool(np.max(np.abs(got)) == 448 * scale)
    c.true("fp8 tiles: every value is an E4M3 value times its tile's scale max(amax, 1e-4)/448 "
           "(two full tiles and a partial one per row)", ok_grid)
    c.true("fp8 tiles: error within the E4M3 bound 2^-4 |x| + scale * 2^-10", ok_bound)
    c.true("fp8 tiles: each tile's amax maps to 448 * scale", ok_amax)
    c.true("fp8 tiles: an all-zero tile stays zero", np.all(out[4, 128:256] == 0))
    changed = x.copy()
    changed[:, 200] *= 100
    c.true("fp8 tiles: a tile's scale does not depend on other tiles",
           np.array_equal(quantize_fp8_tiles(changed)[:, :128], out[:, :128]) and
           np.array_equal(quantize_fp8_tiles(changed)[:, 256:], out[:, 256:]))
    bf16 = ActivationRounding("bf16")
    fp8 = ActivationRounding("fp8", kv_b_exact=True)
    c.true("rounding f32: inputs unchanged", ActivationRounding().round_input(x, True) is x)
    c.true("rounding bf16: every projection's input to BF16",
           np.array_equal(bf16.round_input(x, True), st.round_to_bf16(x)))
    c.true("rounding fp8: FP8 weights get 1x128 tiles, others BF16",
           np.array_equal(fp8.round_input(x, True), out) and np.array_equal(fp8.round_input(x, False), st.round_to_bf16(x)))
    c.true("rounding kv_b_exact: kv_b_proj's input unrounded", fp8.for_kv_b().precision == "f32" and bf16.for_kv_b() is bf16)


def _test_block_scaling(c):
    rng = np.random.default_rng(2)
    for block in ((128, 128), (64, 32)):
        w = rng.standard_normal((300, 200)) * np.exp(rng.uniform(-4, 4, (300, 1)))
        codes, scale = st.quantize_blocks(w, block)
        n_r, n_c = -(-300 // block[0]), -(-200 // block[1])
        c.true(f"block {block}: scale shape [ceil(300/{block[0]}), ceil(200/{block[1]})]", scale.shape == (n_r, n_c))
        deq = st.dequantize_blocks(st.E4M3_TABLE[codes], scale, block)
        loop = np.empty_like(deq)
        for r in range(300):
            for col in range(200):
                loop[r, col] = st.E4M3_TABLE[codes[r, col]] * float(scale[r // block[0], col // block[1]])
        c.close(f"block {block}: dequant vs per-element loop (partial edge blocks)", deq, loop)
        # E4M3 has 3 mantissa bits: relative error <= 2^-4, plus half the subnormal step 2^-9 * scale
        bound = np.abs(w) * 2.0 ** -4 + st.expand_block_scales(scale, w.shape, block) * 2.0 ** -10
        c.true(f"block {block}: quantization error within the E4M3 bound", np.all(np.abs(deq - w) <= bound))
        amax_codes = [np.max(np.abs(st.E4M3_TABLE[codes[i * block[0]:(i + 1) * block[0], j * block[1]:(j + 1) * block[1]]]))
                      for i in range(n_r) for j in range(n_c)]
        c.close(f"block {block}: every block's amax maps to 448", amax_codes, [448.0] * len(amax_codes))
    codes, scale = st.quantize_blocks(rng.standard_normal((130, 129)), (128, 128), power_of_two_scales=True)
    c.true("ue8m0 scales are powers of two", np.all(np.log2(scale) == np.round(np.log2(scale))))


def _test_safetensors(c, tmp):
    rng = np.random.default_rng(3)
    tensors = {
        "a.f32": ("F32", rng.standard_normal((3, 5)).astype(np.float32)),
        "b.bf16": ("BF16", st.float_to_bf16_bits(rng.standard_normal((7,)))),
        "c.f16": ("F16", rng.standard_normal((2, 2)).astype(np.float16)),
        "d.f64": ("F64", rng.standard_normal((1, 3, 2))),
        "e.i64": ("I64", np.arange(5, dtype=np.int64)),
        "f.weight": ("F8_E4M3", rng.integers(0, 0x7E, (130, 3)).astype(np.uint8)),
        "f.weight_scale_inv": ("F32", np.array([[0.5], [4.0]], dtype=np.float32)),
        "g.scalar": ("F32", np.array(2.5, dtype=np.float32)),
        "h.empty": ("F32", np.zeros((0, 4), dtype=np.float32)),
    }
    path = os.path.join(tmp, "t.safetensors")
    st.write_safetensors(path, tensors, {"format": "pt"})
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
    c.true("safetensors header padded to 8 bytes", header_len % 8 == 0)
    stf = st.SafetensorsFile(path)
    c.true("safetensors names and metadata", sorted(stf.names()) == sorted(tensors) and stf.metadata == {"format": "pt"})
    for name, (dtype, array) in tensors.items():
        c.true(f"safetensors round trip {name}", stf.dtype(name) == dtype and
               np.array_equal(np.asarray(stf.raw(name)), array) and stf.shape(name) == list(np.shape(array)))
    ckpt = st.Checkpoint(tmp)
    want = st.E4M3_TABLE[tensors["f.weight"][1]] * np.repeat([[0.5], [4.0]], [128, 2], axis=0)
    c.close("checkpoint dequantizes an F8 weight with its scale (partial edge block)", ckpt.float64("f.weight"), want)
    c.close("checkpoint decodes BF16", ckpt.float64("b.bf16"), st.bf16_to_float32(tensors["b.bf16"][1]))
    bad = os.path.join(tmp, "bad")
    os.makedirs(bad)
    with open(os.path.join(bad, "x.safetensors"), "wb") as f:
        f.write((10 ** 6).to_bytes(8, "little") + b"{}")
    try:
        st.Checkpoint(bad)
        c.true("truncated safetensors file is rejected", False)
    except st.SafetensorsError as e:
        c.true("truncated safetensors error names the file", "x.safetensors" in str(e))


def _test_rms_norm(c):
    # rms([3, 4]) = sqrt(12.5)
    c.close("rms_norm hand values", rms_norm(np.array([3.0, 4.0]), np.array([1.0, 2.0]), 0.0),
            [3 / math.sqrt(12.5), 8 / math.sqrt(12.5)], 1e-15)


def _test_rope(c):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 3, 16))
    positions = np.array([0, 1, 2, 7, 100])
    inv_freq = np.exp(rng.uniform(-6, 0, 8))
    out = apply_rope(x, positions, inv_freq)
    # complex multiplication: (x[2i] + i x[2i+1]) * exp(i * pos * theta_i)
    z = (x[..., 0::2] + 1j * x[..., 1::2]) * np.exp(1j * np.outer(positions, inv_freq))[:, None, :]
    c.close("rope == complex multiplication (real parts)", out[..., 0::2], z.real, 1e-12)
    c.close("rope == complex multiplication (imaginary parts)", out[..., 1::2], z.imag, 1e-12)
    # HF's form: de-interleave to [evens, odds], then x*cos + rotate_half(x)*sin with freqs repeated
    perm = np.concatenate([np.arange(0, 16, 2), np.arange(1, 16, 2)])
    xp = x[..., perm]
    angles = np.concatenate([np.outer(positions, inv_freq)] * 2, axis=-1)[:, None, :]
    rotated_half = np.concatenate([-xp[..., 8:], xp[..., :8]], axis=-1)
    c.close("rope == HF rotate_half on de-interleaved vectors", out[..., perm],
            xp * np.cos(angles) + rotated_half * np.sin(angles), 1e-12)
    q, k = rng.standard_normal((1, 16)), rng.standard_normal((1, 16))
    d1 = np.sum(apply_rope(q, np.array([9]), inv_freq) * apply_rope(k, np.array([4]), inv_freq))
    d2 = np.sum(apply_rope(q, np.array([25]), inv_freq) * apply_rope(k, np.array([20]), inv_freq))
    c.close("rope scores depend only on the relative position", d1, d2, 1e-12)


def _yarn_config(rope_dim, nope_dim, mscale, mscale_all_dim, yarn=True):
    raw = {"vocab_size": 10, "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1,
           "num_attention_heads": 1, "kv_lora_rank": 4, "qk_nope_head_dim": nope_dim,
           "qk_rope_head_dim": rope_dim, "v_head_dim": 4}
    if yarn:
        raw["rope_scaling"] = {"type": "yarn", "factor": 40, "beta_fast": 32, "beta_slow": 1, "mscale": mscale,
                               "mscale_all_dim": mscale_all_dim, "original_max_position_embeddings": 4096}
    return DeepSeekConfig(raw, "self-test")


def _test_yarn(c):
    v3 = _yarn_config(64, 128, 1.0, 1.0)
    # correction dims by hand: 64*ln(4096/(32*2pi))/(2 ln 1e4) = 10.47 -> floor 10; beta_slow 1: 22.51 -> ceil 23
    c.true("yarn correction range for V3 (dim 64) is [10, 23]", yarn_correction_range(v3) == (10, 23))
    want = []
    for i in range(32):
        theta = 10000.0 ** (-2.0 * i / 64)
        ramp = min(max((i - 10) / 13.0, 0.0), 1.0)  # 0: keep theta (extrapolate), 1: theta / factor
        want.append(theta * (1 - ramp) + theta / 40.0 * ramp)
    c.close("yarn frequencies for V3 vs scalar formula", rope_inverse_frequencies(v3), want, 1e-15)
    c.true("yarn keeps pairs 0..10 and divides pairs 23..31 by the factor",
           np.allclose(rope_inverse_frequencies(v3)[:11], 10000.0 ** (-np.arange(11) / 32), rtol=1e-14) and
           np.allclose(rope_inverse_frequencies(v3)[23:], 10000.0 ** (-np.arange(23, 32) / 32) / 40, rtol=1e-14))
    tiny = _yarn_config(16, 32, 1.0, 1.0)
    c.true("yarn correction range for rope dim 16 is [2, 6]", yarn_correction_range(tiny) == (2, 6))
    # softmax scale: 192^-0.5 * (0.1 ln 40 + 1)^2 = 0.1352337788608801 (V3)
    c.close("V3 softmax scale", attention_softmax_scale(v3), 0.1352337788608801, 1e-15)
    v2 = _yarn_config(64, 128, 0.707, 0.707)
    m = 0.1 * 0.707 * math.log(40) + 1
    c.close("V2-Lite softmax scale (mscale_all_dim 0.707)", attention_softmax_scale(v2), m * m / math.sqrt(192), 1e-15)
    c.close("rope amplitude is 1 when mscale == mscale_all_dim", [rope_amplitude(v3), rope_amplitude(v2)], [1.0, 1.0])
    odd = _yarn_config(64, 128, 1.0, 0.707)
    c.close("rope amplitude = mscale(1.0) / mscale(0.707)", rope_amplitude(odd),
            (0.1 * math.log(40) + 1) / (0.0707 * math.log(40) + 1), 1e-15)
    plain = _yarn_config(64, 128, 1.0, 1.0, yarn=False)
    c.close("no rope_scaling: plain frequencies and scale", rope_inverse_frequencies(plain),
            10000.0 ** (-np.arange(32) / 32), 1e-15)
    c.close("no rope_scaling: softmax scale 192^-0.5", attention_softmax_scale(plain), 192 ** -0.5, 1e-15)


class _RouterConfig:
    def __init__(self, scoring_func, topk_method, n_group, topk_group, k, norm, factor):
        self.scoring_func, self.topk_method = scoring_func, topk_method
        self.n_group, self.topk_group, self.num_experts_per_tok = n_group, topk_group, k
        self.norm_topk_prob, self.routed_scaling_factor = norm, factor


def _route_brute_force(cfg, logits, bias):
    """Plain loops, one token at a time, for comparison with route()."""
    all_idx, all_w = [], []
    for row in logits:
        e = len(row)
        if cfg.scoring_func == "sigmoid":
            scores = [1 / (1 + math.exp(-v)) for v in row]
        else:
            total = sum(math.exp(v) for v in row)
            scores = [math.exp(v) / total for v in row]
        choice = [s + (bias[i] if cfg.topk_method == "noaux_tc" else 0.0) for i, s in enumerate(scores)]
        allowed = list(range(e))
        if cfg.topk_method != "greedy" and cfg.n_group > 1:
            size = e // cfg.n_group
            group_score = []
            for g in range(cfg.n_group):
                members = sorted((choice[i] for i in range(g * size, (g + 1) * size)), reverse=True)
                group_score.append(members[0] + members[1] if cfg.topk_method == "noaux_tc" else members[0])
            kept = sorted(range(cfg.n_group), key=lambda g: (-group_score[g], g))[:cfg.topk_group]
            allowed = [i for i in range(e) if i // size in kept]
        picked = sorted(allowed, key=lambda i: (-choice[i], i))[:cfg.num_experts_per_tok]
        weights = [scores[i] for i in picked]
        if cfg.norm_topk_prob:
            weights = [w / sum(weights) for w in weights]
        all_idx.append(picked)
        all_w.append([w * cfg.routed_scaling_factor for w in weights])
    return np.array(all_idx), np.array(all_w)


def _test_router(c):
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731  (sigmoid inverse)
    v3 = _RouterConfig("sigmoid", "noaux_tc", 2, 1, 1, True, 2.5)
    probs = [0.6, 0.55, 0.1, 0.9]  # groups {0,1} (top-2 sum 1.15) and {2,3} (1.0): expert 3 is out
    x = np.array([[logit(p) for p in probs]])
    idx, w = route(v3, x, np.zeros(4))
    c.true("V3 router: group of the best top-2 sum wins over the single best expert", idx.tolist() == [[0]])
    c.close("V3 router: one expert, normalised weight x 2.5", w, [[2.5]], 1e-15)
    idx, w = route(v3, x, np.array([0.0, 0.1, 0.0, 0.0]))
    c.true("V3 router: correction bias changes the selection", idx.tolist() == [[1]])
    v3.num_experts_per_tok = 2
    idx, w = route(v3, x, np.array([0.0, 0.1, 0.0, 0.0]))
    c.true("V3 router k=2 picks experts 1, 0", idx.tolist() == [[1, 0]])
    c.close("V3 router weights are unbiased scores, normalised, x 2.5", w, [[0.55 / 1.15 * 2.5, 0.6 / 1.15 * 2.5]], 1e-14)
    p = [0.35, 0.05, 0.3, 0.3]
    x = np.log(np.array([p]))
    idx, w = route(_RouterConfig("softmax", "greedy", 1, 1, 2, False, 2.0), x)
    c.true("V2 greedy picks the two best (tie -> lower index)", idx.tolist() == [[0, 2]])
    c.close("V2 greedy weights: softmax scores x 2, not normalised", w, [[0.7, 0.6]], 1e-14)
    idx, w = route(_RouterConfig("softmax", "group_limited_greedy", 2, 1, 2, False, 1.0), x)
    c.true("V2 group_limited_greedy keeps the group with the best max", idx.tolist() == [[0, 1]])
    c.close("V2 group_limited_greedy weights", w, [[0.35, 0.05]], 1e-14)

    rng = np.random.default_rng(5)
    cases = [("sigmoid", "noaux_tc", 4, 2, 4, True, 2.5, 16), ("sigmoid", "noaux_tc", 1, 1, 3, True, 1.0, 8),
             ("softmax", "greedy", 1, 1, 3, False, 2.0, 8), ("softmax", "group_limited_greedy", 4, 2, 3, False, 4.0, 16),
             ("softmax", "greedy", 1, 1, 1, True, 1.0, 6), ("sigmoid", "noaux_tc", 8, 3, 6, True, 2.5, 64)]
    for scoring, method, groups, keep, k, norm, factor, experts in cases:
        cfg = _RouterConfig(scoring, method, groups, keep, k, norm, factor)
        logits = rng.standard_normal((40, experts)) * 2
        bias = rng.standard_normal(experts) * 0.3
        idx, w = route(cfg, logits, bias)
        bidx, bw = _route_brute_force(cfg, logits, bias)
        c.true(f"router {method}/{scoring} E={experts} k={k}: same experts as brute force", np.array_equal(idx, bidx))
        c.close(f"router {method}/{scoring} E={experts} k={k}: same weights as brute force", w, bw, 1e-14)


def _random_mla(cfg, rng):
    h, nh = cfg.hidden_size, cfg.num_attention_heads
    r = lambda *shape: Projection(rng.standard_normal(shape) / math.sqrt(shape[-1]), False)  # noqa: E731
    a = {"kv_a": r(cfg.kv_lora_rank + cfg.qk_rope_head_dim, h), "kv_a_norm": 1 + 0.1 * rng.standard_normal(cfg.kv_lora_rank),
         "kv_b": r(nh * (cfg.qk_nope_head_dim + cfg.v_head_dim), cfg.kv_lora_rank), "o": r(h, nh * cfg.v_head_dim)}
    if cfg.q_lora_rank:
        a.update(q_a=r(cfg.q_lora_rank, h), q_a_norm=1 + 0.1 * rng.standard_normal(cfg.q_lora_rank),
                 q_b=r(nh * cfg.qk_head_dim, cfg.q_lora_rank))
    else:
        a["q"] = r(nh * cfg.qk_head_dim, h)
    return a


def _test_mla(c):
    rng = np.random.default_rng(6)
    for name in ("v3_mtp.json", "v2_lite.json"):
        with open(os.path.join(_CONFIG_DIR, name)) as f:
            cfg = DeepSeekConfig(json.load(f), name)
        a = _random_mla(cfg, rng)
        x = rng.standard_normal((9, cfg.hidden_size))
        positions = np.arange(9)
        naive = mla_forward(cfg, a, x, positions)
        c.close(f"MLA naive == absorbed ({name})", naive, mla_forward_absorbed(cfg, a, x, positions), 1e-11)
        c.close(f"MLA is causal ({name})", mla_forward(cfg, a, x[:4], positions[:4]), naive[:4], 1e-12)
        # one token attends only to itself: output = o_proj(v), v from the latent through W_kvb
        _, _, c_kv, _ = mla_project(cfg, a, x[:1], positions[:1])
        v = linear(c_kv, a["kv_b"].weight).reshape(cfg.num_attention_heads, -1)[:, cfg.qk_nope_head_dim:]
        c.close(f"MLA single token == o_proj(v) ({name})", naive[:1], linear(v.reshape(1, -1), a["o"].weight), 1e-12)


def _test_mtp(c, directory, tokens):
    cfg = DeepSeekConfig.load(directory)
    w = Weights(cfg, directory)
    main, (mtp,) = forward_all_logits(cfg, w, tokens)
    c.close("e2e MTP: the main logits are forward_logits'", main, model_logits(directory, tokens))
    c.true("e2e MTP: [T-1, vocab], finite, O(1)", mtp.shape == (len(tokens) - 1, cfg.vocab_size) and
           np.all(np.isfinite(mtp)) and 0.3 < np.std(mtp) < 3)
    _, (prefix,) = forward_all_logits(cfg, w, tokens[:5])
    c.close("e2e MTP: causal (row i sees tokens up to i+1 only)", prefix, mtp[:4], 1e-12)
    # hnorm reads the hidden state after model.norm: RMSNorm is scale-invariant, so scaling
    # model.norm.weight changes the MTP logits only through eps (relative ~ eps / mean square ~ 1e-6),
    # while reshaping it changes them at first order. Before model.norm, neither would matter.
    norm = w.values["model.norm.weight"]
    saved = norm.copy()
    norm *= 2
    _, (scaled,) = forward_all_logits(cfg, w, tokens)
    norm[:] = saved * np.linspace(0.5, 1.5, norm.size)
    _, (reshaped,) = forward_all_logits(cfg, w, tokens)
    norm[:] = saved
    c.close("e2e MTP: scaling model.norm.weight leaves the MTP logits (hnorm is scale-invariant)", scaled, mtp, 1e-5)
    c.true("e2e MTP: reshaping model.norm.weight changes them (hnorm reads the final-normed state)",
           np.max(np.abs(reshaped - mtp)) > 1e-2)


def _test_end_to_end(c, tmp):
    import make_checkpoint as mk
    tokens = [1, 7, 42, 999, 3, 500, 17, 256, 2, 64]

    def config(name):
        with open(os.path.join(_CONFIG_DIR, name)) as f:
            return json.load(f)

    def logits(directory, dequant_round=None, n=len(tokens)):
        return model_logits(directory, tokens[:n], dequant_round)

    v3 = config("v3_mtp.json")
    one, sharded = os.path.join(tmp, "one"), os.path.join(tmp, "sharded")
    mk.write_checkpoint(v3, one, seed=11)
    files = mk.write_checkpoint(v3, sharded, seed=11, shard_mb=0.25)
    base = logits(one)
    c.true("e2e: logits finite and O(1)", np.all(np.isfinite(base)) and 0.3 < np.std(base) < 3)
    c.true("e2e: sharded checkpoint has several files", len(files) > 3)
    c.close("e2e: sharded == single file", logits(sharded), base)
    c.close("e2e: causal (prefix logits unchanged by later tokens)", logits(one, n=4), base[:4], 1e-12)
    mtp = f"model.layers.{v3['num_hidden_layers']}."
    no_mtp = os.path.join(tmp, "no_mtp")
    mk.write_checkpoint(v3, no_mtp, seed=11, skip=lambda name: name.startswith(mtp))
    c.close("e2e: MTP layer tensors do not affect logits", logits(no_mtp), base)
    _test_mtp(c, one, tokens)
    bf16 = model_logits(one, tokens, options=ForwardOptions(rounding=ActivationRounding("bf16")))
    c.true("e2e: emulated BF16 activations move the logits by 1e-4..1e-1 of the largest",
           1e-4 < np.max(np.abs(bf16 - base)) / np.max(np.abs(base)) < 0.1)
    absorbed = model_logits(one, tokens, options=ForwardOptions(mla_forward_absorbed, ActivationRounding("bf16")))
    kv_b_exact = model_logits(one, tokens, options=ForwardOptions(rounding=ActivationRounding("bf16", kv_b_exact=True)))
    c.close("e2e: emulated BF16, absorbed form == naive form with kv_b_proj's input unrounded", absorbed,
            kv_b_exact, 1e-10)
    c.true("e2e: ... and != the naive form rounding it", np.max(np.abs(bf16 - kv_b_exact)) > 1e-5)
    ckpt = st.Checkpoint(one)
    zero_bias = {n: np.zeros(ckpt.shape(n)) for n in ckpt.names() if n.endswith("e_score_correction_bias")}
    biasless = os.path.join(tmp, "biasless")
    mk.write_checkpoint(v3, biasless, seed=11, overrides=zero_bias)
    c.true("e2e: the correction bias changes routing (the test exercises it)",
           np.max(np.abs(logits(biasless) - base)) > 1e-3)
    broken = os.path.join(tmp, "broken")
    mk.write_checkpoint(v3, broken, seed=11, skip=lambda name: name == "model.layers.1.mlp.experts.3.up_proj.weight")
    try:
        logits(broken)
        c.true("e2e: a missing tensor is reported", False)
    except st.SafetensorsError as e:
        c.true("e2e: the missing-tensor error names the tensor", "experts.3.up_proj" in str(e))

    # FP8 with partial edge blocks == the same dequantized values stored as F64 without quantization
    fp8_cfg = config("v3_fp8_edges.json")
    fp8_dir, f64_dir = os.path.join(tmp, "fp8"), os.path.join(tmp, "f64")
    mk.write_checkpoint(fp8_cfg, fp8_dir, fp8=True, seed=12)
    fp8_ckpt = st.Checkpoint(fp8_dir)
    c.true("e2e: FP8 checkpoint stores projections as F8_E4M3 with scales",
           fp8_ckpt.dtype("model.layers.0.self_attn.q_b_proj.weight") == "F8_E4M3" and
           fp8_ckpt.shape("model.layers.0.self_attn.q_b_proj.weight_scale_inv") == [2, 2] and
           fp8_ckpt.dtype("model.layers.1.mlp.gate.weight") == "BF16")
    values = {n: fp8_ckpt.float64(n) for n in fp8_ckpt.names() if not n.endswith("_scale_inv")}
    mk.write_checkpoint(fp8_cfg, f64_dir, seed=12, dtype="f64", overrides=values)
    fp8_logits = logits(fp8_dir)
    c.close("e2e: FP8 block dequant == plain checkpoint of the dequantized values", fp8_logits, logits(f64_dir), 1e-12)
    rounded = logits(fp8_dir, "bf16")
    c.true("e2e: --dequant-round bf16 changes FP8 logits slightly",
           0 < np.max(np.abs(rounded - fp8_logits)) < 0.05)

    v2 = config("v2_lite.json")
    v2_dir = os.path.join(tmp, "v2")
    mk.write_checkpoint(v2, v2_dir, seed=13, dtype="f32")
    v2_logits = logits(v2_dir)
    c.true("e2e: V2-Lite-style checkpoint gives finite O(1) logits",
           np.all(np.isfinite(v2_logits)) and 0.3 < np.std(v2_logits) < 3)


_CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def run_self_test():
    import tempfile
    checks = _Checks()
    with tempfile.TemporaryDirectory(prefix="dsv3_reference_") as tmp:
        steps = [("fp8 codes", lambda: _test_fp8_codes(checks)), ("bf16", lambda: _test_bf16(checks)),
                 ("activation rounding", lambda: _test_activation_rounding(checks)),
                 ("block scaling", lambda: _test_block_scaling(checks)),
                 ("safetensors", lambda: _test_safetensors(checks, os.path.join(tmp, "st"))),
                 ("rms_norm", lambda: _test_rms_norm(checks)), ("rope", lambda: _test_rope(checks)),
                 ("yarn", lambda: _test_yarn(checks)), ("router", lambda: _test_router(checks)),
                 ("mla", lambda: _test_mla(checks)),
                 ("end to end", lambda: _test_end_to_end(checks, os.path.join(tmp, "e2e")))]
        for name, step in steps:
            before = len(checks.failures)
            if name == "safetensors":
                os.makedirs(os.path.join(tmp, "st"))
            step()
            print(f"self-test {name}: {'ok' if len(checks.failures) == before else 'FAILED'}")
    for failure in checks.failures:
        print(f"  FAILED: {failure}")
    print(f"self-test: {checks.count - len(checks.failures)}/{checks.count} checks passed")
    return 0 if not checks.failures else 1
