#!/usr/bin/env python3
"""Independent float64 reference for DeepSeek-V3 / V2 next-token logits (NumPy only).

Reads a Hugging Face checkpoint directory (config.json + safetensors, BF16 or block-scaled FP8,
single file or sharded) and computes the logits at every position of a token list, following the
semantics of DeepSeek's inference/model.py and Hugging Face's modeling_deepseek.py (SPEC.md
section 1). Everything is computed in float64 and written plainly, one concept per function:
RMSNorm, YaRN RoPE on interleaved pairs, MLA in its naive form, SwiGLU, the V3 and V2 routers, MoE,
and the multi-token-prediction (MTP) modules stored after the main layers.

    deepseek_reference.py --model DIR --tokens 1,2,3 --out logits.npy   # float32 [n_tokens, vocab]
        [--mtp mtp.npy]                 # MTP module 0's logits, float32 [n_tokens - 1, vocab]
        [--precision bf16|fp8]          # round activations where dsv3 --precision does
    deepseek_reference.py --self-test                                    # numeric unit checks

See docs/REFERENCE.md.
"""

import argparse
import collections
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np as st  # noqa: E402  (re-executes with an interpreter that has numpy)
from activation_rounding import EXACT, PRECISIONS, ActivationRounding  # noqa: E402

np = st.np


class ConfigError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# config.json (Hugging Face field names)
# ---------------------------------------------------------------------------------------------

class DeepSeekConfig:
    """The fields of a DeepSeek-V3/V2 config.json that the forward pass uses, with HF defaults."""

    def __init__(self, raw, source="config.json"):
        self.raw = dict(raw)
        self.source = source

        def get(name, default=None, required=False):
            value = raw.get(name, default)
            if required and value is None:
                raise ConfigError(f"[config] {source}: field '{name}' is required")
            return value

        def get_int(name, default=None, required=False, minimum=0):
            value = get(name, default, required)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
                raise ConfigError(f"[config] {source}: field '{name}' must be an integer, got {value!r}")
            if int(value) < minimum:
                raise ConfigError(f"[config] {source}: field '{name}' must be >= {minimum}, got {value}")
            return int(value)

        def get_float(name, default):
            value = get(name, default)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"[config] {source}: field '{name}' must be a number, got {value!r}")
            return float(value)

        self.model_type = get("model_type", "deepseek_v3")
        self.vocab_size = get_int("vocab_size", required=True, minimum=1)
        self.hidden_size = get_int("hidden_size", required=True, minimum=1)
        self.intermediate_size = get_int("intermediate_size", 0)
        self.moe_intermediate_size = get_int("moe_intermediate_size", 0)
        self.num_hidden_layers = get_int("num_hidden_layers", required=True, minimum=1)
        self.num_attention_heads = get_int("num_attention_heads", required=True, minimum=1)
        q_lora = get("q_lora_rank")
        self.q_lora_rank = None if q_lora in (None, 0) else get_int("q_lora_rank", minimum=1)
        self.kv_lora_rank = get_int("kv_lora_rank", required=True, minimum=1)
        self.qk_nope_head_dim = get_int("qk_nope_head_dim", required=True, minimum=0)
        self.qk_rope_head_dim = get_int("qk_rope_head_dim", required=True, minimum=0)
        self.v_head_dim = get_int("v_head_dim", required=True, minimum=1)
        if self.qk_rope_head_dim % 2:
            raise ConfigError(f"[config] {source}: qk_rope_head_dim must be even (RoPE rotates pairs)")
        self.n_routed_experts = get_int("n_routed_experts", 0) or 0
        self.n_shared_experts = get_int("n_shared_experts", 0) or 0
        self.num_experts_per_tok = get_int("num_experts_per_tok", 0) or 0
        self.first_k_dense_replace = get_int("first_k_dense_replace", 0)
        self.moe_layer_freq = get_int("moe_layer_freq", 1, minimum=1)
        self.n_group = get_int("n_group", 1, minimum=1) or 1
        self.topk_group = get_int("topk_group", 1, minimum=1) or 1
        self.scoring_func = get("scoring_func", "softmax")
        self.topk_method = get("topk_method", "greedy")
        self.norm_topk_prob = bool(get("norm_topk_prob", False))
        self.routed_scaling_factor = get_float("routed_scaling_factor", 1.0)
        self.rope_theta = get_float("rope_theta", 10000.0)
        self.rms_norm_eps = get_float("rms_norm_eps", 1e-6)
        self.num_nextn_predict_layers = get_int("num_nextn_predict_layers", 0) or 0
        self.tie_word_embeddings = bool(get("tie_word_embeddings", False))
        act = get("hidden_act", "silu")
        if act != "silu":
            raise ConfigError(f"[config] {source}: hidden_act '{act}' unsupported (DeepSeek uses silu)")

        if self.scoring_func not in ("sigmoid", "softmax"):
            raise ConfigError(f"[config] {source}: scoring_func '{self.scoring_func}' must be sigmoid or softmax")
        if self.topk_method not in ("noaux_tc", "greedy", "group_limited_greedy"):
            raise ConfigError(
                f"[config] {source}: topk_method '{self.topk_method}' must be noaux_tc, greedy or group_limited_greedy")
        if self.n_routed_experts > 0:
            if self.moe_intermediate_size <= 0:
                raise ConfigError(f"[config] {source}: moe_intermediate_size must be > 0 with routed experts")
            if not 1 <= self.num_experts_per_tok <= self.n_routed_experts:
                raise ConfigError(f"[config] {source}: num_experts_per_tok must be in [1, n_routed_experts]")
            if self.n_routed_experts % self.n_group:
                raise ConfigError(f"[config] {source}: n_routed_experts must be divisible by n_group")
            if self.topk_group > self.n_group:
                raise ConfigError(f"[config] {source}: topk_group must be <= n_group")
            per_group = self.n_routed_experts // self.n_group
            if self.topk_method != "greedy" and self.num_experts_per_tok > self.topk_group * per_group:
                raise ConfigError(f"[config] {source}: the kept groups hold fewer than num_experts_per_tok experts")
            if self.topk_method == "noaux_tc" and self.n_group > 1 and per_group < 2:
                raise ConfigError(f"[config] {source}: noaux_tc group scores need >= 2 experts per group")
        if any(not self.is_moe_layer(i) for i in range(self.num_hidden_layers)) and self.intermediate_size <= 0:
            raise ConfigError(f"[config] {source}: intermediate_size must be > 0 for dense layers")

        # rope_scaling: absent -> plain RoPE; "yarn" -> YaRN (HF uses key "type", newer files "rope_type").
        rs = get("rope_scaling")
        self.yarn = False
        self.rope_factor = 1.0
        self.beta_fast, self.beta_slow = 32.0, 1.0
        self.mscale, self.mscale_all_dim = 1.0, 0.0
        self.original_max_position_embeddings = 4096
        if rs:
            kind = rs.get("type", rs.get("rope_type"))
            if kind != "yarn":
                raise ConfigError(f"[config] {source}: rope_scaling type '{kind}' unsupported (DeepSeek uses yarn)")
            self.yarn = True
            self.rope_factor = float(rs.get("factor", 1.0))
            self.beta_fast = float(rs.get("beta_fast", 32))
            self.beta_slow = float(rs.get("beta_slow", 1))
            self.mscale = float(rs.get("mscale", 1.0))
            self.mscale_all_dim = float(rs.get("mscale_all_dim", 0.0))
            self.original_max_position_embeddings = int(rs.get("original_max_position_embeddings", 4096))

        q = get("quantization_config") or {}
        self.fp8 = q.get("quant_method") == "fp8"
        block = q.get("weight_block_size", [128, 128]) or [128, 128]
        self.weight_block = (int(block[0]), int(block[1]))

    @classmethod
    def load(cls, model_dir):
        path = os.path.join(model_dir, "config.json")
        try:
            with open(path) as f:
                raw = json.load(f)
        except OSError as e:
            raise ConfigError(f"[config] cannot read {path}: {e}") from e
        except json.JSONDecodeError as e:
            raise ConfigError(f"[config] {path} is not valid JSON: {e}") from e
        return cls(raw, path)

    @property
    def qk_head_dim(self):
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    def is_moe_layer(self, layer):
        # HF: routed experts exist, layer >= first_k_dense_replace and layer % moe_layer_freq == 0.
        return self.n_routed_experts > 0 and layer >= self.first_k_dense_replace and layer % self.moe_layer_freq == 0


# ---------------------------------------------------------------------------------------------
# Elementary functions
# ---------------------------------------------------------------------------------------------

def rms_norm(x, weight, eps):
    """x / sqrt(mean(x^2) + eps) * weight over the last axis."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def silu(x):
    return x / (1.0 + np.exp(-x))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x, axis=-1):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


def linear(x, weight):
    """x [..., in] times weight [out, in]^T -> [..., out] (the HF/PyTorch weight layout). einsum
    rather than matmul: with the reference BLAS Debian's numpy links by default, it is ~3x faster
    at these sizes (same float64 products, summed in another order)."""
    return np.einsum("...i,oi->...o", x, weight)


# A projection's weight [out, in] (float64, dequantized) and whether the checkpoint stores it as FP8,
# which decides how dsv3's fp8 precision treats its input (activation_rounding.py).
Projection = collections.namedtuple("Projection", "weight fp8")


def project(x, projection, rounding=EXACT):
    """x W^T with x first rounded as `rounding` says (exact by default)."""
    return linear(rounding.round_input(x, projection.fp8), projection.weight)


# ---------------------------------------------------------------------------------------------
# YaRN RoPE (HF DeepseekV2/V3 YarnRotaryEmbedding; DeepSeek's precompute_freqs_cis)
# ---------------------------------------------------------------------------------------------

def yarn_get_mscale(factor, mscale):
    """0.1 * mscale * ln(factor) + 1 when factor > 1, else 1."""
    if factor <= 1.0:
        return 1.0
    return 0.1 * mscale * math.log(factor) + 1.0


def yarn_correction_range(cfg):
    """Indices [low, high] of the rotary pairs between which YaRN ramps from extrapolation to
    interpolation: the pair whose wavelength fits beta_fast (resp. beta_slow) rotations into the
    original context, floored (resp. ceiled) and clamped to [0, dim-1]."""
    dim, base, original = cfg.qk_rope_head_dim, cfg.rope_theta, cfg.original_max_position_embeddings

    def correction_dim(rotations):
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low = math.floor(correction_dim(cfg.beta_fast))
    high = math.ceil(correction_dim(cfg.beta_slow))
    return max(low, 0), min(high, dim - 1)


def rope_inverse_frequencies(cfg):
    """theta_i for pair i = 0..dim/2-1. Plain: base^(-2i/dim). YaRN (whenever rope_scaling is yarn):
    blend of theta_i/factor (interpolated) and theta_i (extrapolated) by a linear ramp over the pair
    index between the correction range bounds; ramp 0 keeps theta_i, ramp 1 gives theta_i/factor."""
    dim = cfg.qk_rope_head_dim
    theta = cfg.rope_theta ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)
    if not cfg.yarn:
        return theta
    low, high = yarn_correction_range(cfg)
    if low == high:
        high += 0.001  # as HF: avoid a zero-width ramp
    ramp = np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    return theta / cfg.rope_factor * ramp + theta * (1.0 - ramp)


def rope_amplitude(cfg):
    """HF multiplies cos/sin by mscale(factor, mscale) / mscale(factor, mscale_all_dim); 1 for every
    released config (V3: 1.0/1.0, V2-Lite: 0.707/0.707) and without YaRN."""
    if not cfg.yarn:
        return 1.0
    return yarn_get_mscale(cfg.rope_factor, cfg.mscale) / yarn_get_mscale(cfg.rope_factor, cfg.mscale_all_dim)


def attention_softmax_scale(cfg):
    """qk_head_dim^-0.5, times m^2 under YaRN with m = 0.1 * mscale_all_dim * ln(factor) + 1
    (HF applies it when mscale_all_dim is set; m = 1 when it is 0 or factor <= 1)."""
    scale = cfg.qk_head_dim ** -0.5
    if cfg.yarn and cfg.mscale_all_dim:
        m = yarn_get_mscale(cfg.rope_factor, cfg.mscale_all_dim)
        scale *= m * m
    return scale


def apply_rope(x, positions, inv_freq, amplitude=1.0):
    """Rotate interleaved pairs (x[..., 2i], x[..., 2i+1]) by positions[t] * inv_freq[i].

    x: [T, ..., d] with the token axis first; positions: [T]."""
    angles = np.outer(positions.astype(np.float64), inv_freq)  # [T, d/2]
    shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (inv_freq.shape[0],)
    cos = (np.cos(angles) * amplitude).reshape(shape)
    sin = (np.sin(angles) * amplitude).reshape(shape)
    even, odd = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------

class Weights:
    """Float64 tensors from a checkpoint by HF name (SPEC.md section 1), FP8 dequantized. Each tensor is
    read once and kept: `values` maps names to the arrays every later read returns, so a caller may
    change a weight in place (finite differences) and the next forward pass sees it."""

    def __init__(self, cfg, model_dir, dequant_round=None):
        self.cfg = cfg
        self.ckpt = st.Checkpoint(model_dir, cfg.weight_block)
        self.dequant_round = dequant_round  # None, or "bf16": round dequantized FP8 weights to BF16
        self.values = {}
        self.projections = {}
        self.sources = {}  # name -> the name whose array it reads (see share)

    def has(self, name):
        return self.ckpt.has(name)

    def share(self, name, source):
        """Reads of `name` return `source`'s array: one parameter stored under two names, as dsv3's
        training keeps the MTP modules' embedding and head (train_model.cpp, share_mtp_embedding_head)."""
        self.sources[name] = source

    def get(self, name, shape):
        name = self.sources.get(name, name)
        if name not in self.values:
            value = np.array(self.ckpt.float64(name, shape), dtype=np.float64)
            if self.dequant_round == "bf16" and self.ckpt.dtype(name).startswith("F8"):
                value = st.round_to_bf16(value)
            self.values[name] = value
        return self.values[name]

    def projection(self, name, shape):
        name = self.sources.get(name, name)
        if name not in self.projections:
            self.projections[name] = Projection(self.get(name, shape), self.ckpt.dtype(name).startswith("F8"))
        return self.projections[name]


def layer_prefix(layer):
    return f"model.layers.{layer}."


# ---------------------------------------------------------------------------------------------
# Multi-head latent attention (naive form)
# ---------------------------------------------------------------------------------------------

def load_attention(cfg, w, layer):
    p = layer_prefix(layer) + "self_attn."
    h, nh = cfg.hidden_size, cfg.num_attention_heads
    a = {}
    if cfg.q_lora_rank:
        a["q_a"] = w.projection(p + "q_a_proj.weight", [cfg.q_lora_rank, h])
        a["q_a_norm"] = w.get(p + "q_a_layernorm.weight", [cfg.q_lora_rank])
        a["q_b"] = w.projection(p + "q_b_proj.weight", [nh * cfg.qk_head_dim, cfg.q_lora_rank])
    else:
        a["q"] = w.projection(p + "q_proj.weight", [nh * cfg.qk_head_dim, h])
    a["kv_a"] = w.projection(p + "kv_a_proj_with_mqa.weight", [cfg.kv_lora_rank + cfg.qk_rope_head_dim, h])
    a["kv_a_norm"] = w.get(p + "kv_a_layernorm.weight", [cfg.kv_lora_rank])
    a["kv_b"] = w.projection(p + "kv_b_proj.weight",
                             [nh * (cfg.qk_nope_head_dim + cfg.v_head_dim), cfg.kv_lora_rank])
    a["o"] = w.projection(p + "o_proj.weight", [h, nh * cfg.v_head_dim])
    return a


def mla_project(cfg, a, x, positions, rounding=EXACT):
    """Queries, latent and rope key of x [T, H]: q_nope [T,nh,nope], q_rope [T,nh,rope] (rotated),
    c_kv [T,kv_lora] (normalised), k_rope [T,rope] (rotated, shared by all heads)."""
    t, nh = x.shape[0], cfg.num_attention_heads
    if cfg.q_lora_rank:
        c_q = rms_norm(project(x, a["q_a"], rounding), a["q_a_norm"], cfg.rms_norm_eps)
        q = project(c_q, a["q_b"], rounding)
    else:
        q = project(x, a["q"], rounding)
    q = q.reshape(t, nh, cfg.qk_head_dim)
    q_nope, q_rope = q[..., :cfg.qk_nope_head_dim], q[..., cfg.qk_nope_head_dim:]
    kv = project(x, a["kv_a"], rounding)
    c_kv = rms_norm(kv[:, :cfg.kv_lora_rank], a["kv_a_norm"], cfg.rms_norm_eps)
    k_rope = kv[:, cfg.kv_lora_rank:]
    inv_freq, amp = rope_inverse_frequencies(cfg), rope_amplitude(cfg)
    return q_nope, apply_rope(q_rope, positions, inv_freq, amp), c_kv, apply_rope(k_rope, positions, inv_freq, amp)


def causal_softmax(scores):
    """scores [nh, T, T] (query i, key j); keys j > i masked out."""
    t = scores.shape[-1]
    masked = np.where(np.triu(np.ones((t, t), dtype=bool), k=1), -np.inf, scores)
    return softmax(masked, axis=-1)


def mla_forward(cfg, a, x, positions, rounding=EXACT):
    """Naive MLA: expand the latent into per-head keys and values, then ordinary attention."""
    t, nh = x.shape[0], cfg.num_attention_heads
    q_nope, q_rope, c_kv, k_rope = mla_project(cfg, a, x, positions, rounding)
    kv = project(c_kv, a["kv_b"], rounding.for_kv_b()).reshape(t, nh, cfg.qk_nope_head_dim + cfg.v_head_dim)
    k_nope, v = kv[..., :cfg.qk_nope_head_dim], kv[..., cfg.qk_nope_head_dim:]
    scores = np.einsum("ihd,jhd->hij", q_nope, k_nope) + np.einsum("ihr,jr->hij", q_rope, k_rope)
    probs = causal_softmax(scores * attention_softmax_scale(cfg))
    out = np.einsum("hij,jhd->ihd", probs, v)  # [T, nh, v_head_dim]
    return project(out.reshape(t, nh * cfg.v_head_dim), a["o"], rounding)


def mla_forward_absorbed(cfg, a, x, positions, rounding=EXACT):
    """Absorbed MLA (SPEC.md section 1), used only to cross-check mla_forward in the self-test:
    queries move into latent space through W_kvb's key part; values come out through its value part.
    W_kvb multiplies unrounded values here, as in dsv3's absorbed form (rounding.kv_b_exact)."""
    t, nh = x.shape[0], cfg.num_attention_heads
    q_nope, q_rope, c_kv, k_rope = mla_project(cfg, a, x, positions, rounding)
    kv_b = a["kv_b"].weight.reshape(nh, cfg.qk_nope_head_dim + cfg.v_head_dim, cfg.kv_lora_rank)
    w_k, w_v = kv_b[:, :cfg.qk_nope_head_dim], kv_b[:, cfg.qk_nope_head_dim:]
    q_latent = np.einsum("ihd,hdc->ihc", q_nope, w_k)
    scores = np.einsum("ihc,jc->hij", q_latent, c_kv) + np.einsum("ihr,jr->hij", q_rope, k_rope)
    probs = causal_softmax(scores * attention_softmax_scale(cfg))
    latent_out = np.einsum("hij,jc->ihc", probs, c_kv)
    out = np.einsum("ihc,hdc->ihd", latent_out, w_v)
    return project(out.reshape(t, nh * cfg.v_head_dim), a["o"], rounding)


# ---------------------------------------------------------------------------------------------
# Feed-forward: SwiGLU, router, MoE
# ---------------------------------------------------------------------------------------------

def swiglu(x, mlp, rounding=EXACT):
    """down(silu(gate x) * up x); mlp = (gate, up, down) projections."""
    gate, up, down = mlp
    return project(silu(project(x, gate, rounding)) * project(x, up, rounding), down, rounding)


def load_mlp(w, prefix, hidden, inter):
    return (w.projection(prefix + "gate_proj.weight", [inter, hidden]),
            w.projection(prefix + "up_proj.weight", [inter, hidden]),
            w.projection(prefix + "down_proj.weight", [hidden, inter]))


def top_indices(values, k):
    """Indices of the k largest entries of each row, largest first; ties go to the lower index."""
    order = np.argsort(-values, axis=-1, kind="stable")
    return order[..., :k]


def route(cfg, router_logits, bias=None):
    """Expert choice for each token: (indices [T, k], weights [T, k]).

    scores = sigmoid or softmax of the router logits. Selection:
      greedy               - top-k of scores;
      group_limited_greedy - group score = max score in the group, keep topk_group groups, top-k in them;
      noaux_tc (V3)        - biased = scores + e_score_correction_bias (selection only); group score =
                             sum of the top-2 biased scores of the group; keep topk_group groups; top-k of
                             biased within them (experts of dropped groups excluded, as model.py's -inf).
    Weights are the unbiased scores of the chosen experts, divided by their sum when norm_topk_prob,
    then times routed_scaling_factor. (HF skips the division when k == 1 and, for V2 only, skips the
    scaling factor when it normalises; no released config hits either case. model.py normalises for
    sigmoid scoring and always scales.)"""
    scores = sigmoid(router_logits) if cfg.scoring_func == "sigmoid" else softmax(router_logits)
    t, e = scores.shape
    k = cfg.num_experts_per_tok
    choice = scores
    if cfg.topk_method == "noaux_tc":
        if bias is None:
            raise ConfigError("[router] topk_method noaux_tc needs mlp.gate.e_score_correction_bias")
        choice = scores + bias
    if cfg.topk_method != "greedy" and cfg.n_group > 1:
        grouped = choice.reshape(t, cfg.n_group, e // cfg.n_group)
        if cfg.topk_method == "noaux_tc":
            group_scores = np.sort(grouped, axis=-1)[..., -2:].sum(axis=-1)
        else:
            group_scores = grouped.max(axis=-1)
        kept = top_indices(group_scores, cfg.topk_group)
        group_allowed = np.zeros((t, cfg.n_group), dtype=bool)
        np.put_along_axis(group_allowed, kept, True, axis=-1)
        allowed = np.repeat(group_allowed, e // cfg.n_group, axis=-1)
        choice = np.where(allowed, choice, -np.inf)
    indices = top_indices(choice, k)
    weights = np.take_along_axis(scores, indices, axis=-1)
    if cfg.norm_topk_prob:
        weights = weights / weights.sum(axis=-1, keepdims=True)
    return indices, weights * cfg.routed_scaling_factor


def load_moe(cfg, w, layer):
    p = layer_prefix(layer) + "mlp."
    h, e = cfg.hidden_size, cfg.n_routed_experts
    m = {"gate": w.get(p + "gate.weight", [e, h]), "bias": None}
    if cfg.topk_method == "noaux_tc":
        m["bias"] = w.get(p + "gate.e_score_correction_bias", [e])
    m["experts"] = [load_mlp(w, f"{p}experts.{i}.", h, cfg.moe_intermediate_size) for i in range(e)]
    m["shared"] = None
    if cfg.n_shared_experts > 0:
        m["shared"] = load_mlp(w, p + "shared_experts.", h, cfg.moe_intermediate_size * cfg.n_shared_experts)
    return m


def moe_forward(cfg, m, x, rounding=EXACT, routes=None):
    """sum over chosen experts of weight * expert(x), plus the shared experts. The router logits are
    exact under every rounding (dsv3 computes them from f32 activations). `routes`, a list, receives
    the chosen experts [T, k]."""
    indices, weights = route(cfg, linear(x, m["gate"]), m["bias"])
    if routes is not None:
        routes.append(indices)
    y = np.zeros_like(x)
    for expert in np.unique(indices):
        tokens, slot = np.nonzero(indices == expert)
        y[tokens] += swiglu(x[tokens], m["experts"][expert], rounding) * weights[tokens, slot][:, None]
    if m["shared"] is not None:
        y += swiglu(x, m["shared"], rounding)
    return y


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------

class ForwardOptions:
    """How a forward pass computes: the attention formulation (mla_forward; the self-test swaps in
    mla_forward_absorbed), the activation rounding to emulate (dsv3's ForwardOptions::precision), and
    an optional list that collects every MoE layer's expert choice in order (to notice when rounding
    or a perturbation changes routing)."""

    def __init__(self, attention=None, rounding=EXACT, routes=None):
        self.attention = attention or mla_forward
        self.rounding = rounding
        self.routes = routes


DEFAULT_OPTIONS = ForwardOptions()


def decoder_block(cfg, w, layer, x, positions, options=DEFAULT_OPTIONS):
    """One block (main layer or MTP module): x + attention(norm x), then + FFN(norm x). Dense SwiGLU
    or MoE by the layer index (is_moe_layer), for MTP layers too, as dsv3 and HF decide it."""
    h = cfg.hidden_size
    p = layer_prefix(layer)
    attn_in = rms_norm(x, w.get(p + "input_layernorm.weight", [h]), cfg.rms_norm_eps)
    x = x + options.attention(cfg, load_attention(cfg, w, layer), attn_in, positions, options.rounding)
    ffn_in = rms_norm(x, w.get(p + "post_attention_layernorm.weight", [h]), cfg.rms_norm_eps)
    if cfg.is_moe_layer(layer):
        return x + moe_forward(cfg, load_moe(cfg, w, layer), ffn_in, options.rounding, options.routes)
    return x + swiglu(ffn_in, load_mlp(w, p + "mlp.", h, cfg.intermediate_size), options.rounding)


def check_tokens(cfg, tokens):
    tokens = np.asarray(tokens, dtype=np.int64)
    if tokens.ndim != 1 or tokens.size == 0:
        raise ValueError("[reference] tokens must be a non-empty list")
    if tokens.min() < 0 or tokens.max() >= cfg.vocab_size:
        raise ValueError(f"[reference] token ids must be in [0, {cfg.vocab_size}); got {tokens.min()}..{tokens.max()}")
    return tokens


def embed(cfg, w, tokens):
    return w.get("model.embed_tokens.weight", [cfg.vocab_size, cfg.hidden_size])[tokens]


def forward_hidden(cfg, w, tokens, options=DEFAULT_OPTIONS):
    """Hidden states after the last main layer (before the final norm), [T, H]."""
    tokens = check_tokens(cfg, tokens)
    x = embed(cfg, w, tokens)
    positions = np.arange(tokens.size)
    # Only the main layers: model.layers.{num_hidden_layers + k} are the MTP modules (mtp_forward).
    for layer in range(cfg.num_hidden_layers):
        x = decoder_block(cfg, w, layer, x, positions, options)
    return x


def final_norm(cfg, w, x):
    return rms_norm(x, w.get("model.norm.weight", [cfg.hidden_size]), cfg.rms_norm_eps)


def head_projection_name(cfg):
    return "model.embed_tokens.weight" if cfg.tie_word_embeddings else "lm_head.weight"


def head_projection(cfg, w):
    return w.projection(head_projection_name(cfg), [cfg.vocab_size, cfg.hidden_size])


def forward_logits(cfg, w, tokens, options=DEFAULT_OPTIONS):
    """Next-token logits at every position, float64 [T, vocab]."""
    hidden = final_norm(cfg, w, forward_hidden(cfg, w, tokens, options))
    return project(hidden, head_projection(cfg, w), options.rounding)


def mtp_forward(cfg, w, k, tokens, previous, options=DEFAULT_OPTIONS):
    """MTP module k (model.layers.{num_hidden_layers + k}; SPEC.md section 1, src/model/mtp.h) over the
    positions i = 0 .. T-2-k of a token list of length T: the input is
        eh_proj([enorm(Emb(t_{i+1+k})); hnorm(previous_i)])     (embedding first)
    where `previous` is the main model's hidden state after the final norm (model.norm) for k = 0, and
    module k-1's block output (before shared_head.norm) for k > 0; then one decoder block whose
    attention runs causally over the module's own positions 0 .. T-2-k (RoPE at those positions);
    then shared_head.norm and shared_head.head. Row i predicts t_{i+2+k}. The module reads its own
    copies of the embedding and head (model.layers.{N+k}.embed_tokens / shared_head.head), as serving
    engines load them. Returns (logits [T-1-k, vocab], block output [T-1-k, H])."""
    tokens = check_tokens(cfg, tokens)
    n = tokens.size - 1 - k
    if n < 1:
        raise ValueError(f"[reference] MTP module {k} needs at least {k + 2} tokens, got {tokens.size}")
    h, v, layer = cfg.hidden_size, cfg.vocab_size, cfg.num_hidden_layers + k
    p = layer_prefix(layer)
    emb = w.get(p + "embed_tokens.weight", [v, h])[tokens[1 + k:]]
    concat = np.concatenate([rms_norm(emb, w.get(p + "enorm.weight", [h]), cfg.rms_norm_eps),
                             rms_norm(previous[:n], w.get(p + "hnorm.weight", [h]), cfg.rms_norm_eps)], axis=-1)
    x = project(concat, w.projection(p + "eh_proj.weight", [h, 2 * h]), options.rounding)
    x = decoder_block(cfg, w, layer, x, np.arange(n), options)
    normed = rms_norm(x, w.get(p + "shared_head.norm.weight", [h]), cfg.rms_norm_eps)
    return project(normed, w.projection(p + "shared_head.head.weight", [v, h]), options.rounding), x


def forward_all_logits(cfg, w, tokens, options=DEFAULT_OPTIONS, depth=None):
    """The main logits [T, vocab] and those of MTP modules 0 .. depth-1 (default: every module the
    config has), module k's [T-1-k, vocab], chained as mtp_forward describes."""
    depth = cfg.num_nextn_predict_layers if depth is None else depth
    hidden = final_norm(cfg, w, forward_hidden(cfg, w, tokens, options))
    logits = project(hidden, head_projection(cfg, w), options.rounding)
    mtp_logits, previous = [], hidden
    for k in range(depth):
        module_logits, previous = mtp_forward(cfg, w, k, tokens, previous, options)
        mtp_logits.append(module_logits)
    return logits, mtp_logits


def cross_entropy(logits, targets):
    """-log softmax(logits)[target] per row, float64 [rows]."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return -log_probs[np.arange(len(targets)), np.asarray(targets)]


def model_logits(model_dir, tokens, dequant_round=None, options=DEFAULT_OPTIONS):
    """forward_logits of a checkpoint directory."""
    cfg = DeepSeekConfig.load(model_dir)
    return forward_logits(cfg, Weights(cfg, model_dir, dequant_round), tokens, options)


def parse_tokens(text):
    try:
        tokens = [int(t) for t in text.replace(" ", "").split(",") if t != ""]
    except ValueError as e:
        raise ValueError(f"[reference] --tokens must be comma-separated integers, got {text!r}") from e
    if not tokens:
        raise ValueError("[reference] --tokens is empty")
    return tokens


def save_logits(path, logits, what):
    if not np.all(np.isfinite(logits)):
        raise ValueError(f"[reference] non-finite {what}")
    np.save(path, logits.astype(np.float32))
    print(f"deepseek_reference: wrote {what} to {path} [{logits.shape[0]}, {logits.shape[1]}] "
          f"(max |logit| {np.max(np.abs(logits)):.4g})")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Float64 NumPy reference logits for DeepSeek-V3/V2 checkpoints")
    parser.add_argument("--model", help="checkpoint directory (config.json + safetensors)")
    parser.add_argument("--tokens", help="comma-separated token ids, e.g. 1,2,3")
    parser.add_argument("--out", help="output .npy, float32 [n_tokens, vocab]")
    parser.add_argument("--mtp", help="also write MTP module 0's logits, float32 [n_tokens - 1, vocab], to this .npy")
    parser.add_argument("--dequant-round", choices=["none", "bf16"], default="none",
                        help="round dequantized FP8 weights to BF16 (what model.py's bf16 GEMM path does)")
    parser.add_argument("--precision", choices=PRECISIONS, default="f32",
                        help="round activations where `dsv3 --precision` does (activation_rounding.py); "
                             "f32: nothing is rounded")
    parser.add_argument("--kv-b-exact", action="store_true",
                        help="with --precision bf16/fp8: leave kv_b_proj's input unrounded, as dsv3's absorbed "
                             "attention does for chunks of fewer than 32 tokens")
    parser.add_argument("--self-test", action="store_true", help="run the numeric unit checks and exit")
    args = parser.parse_args(argv)
    if args.self_test:
        import reference_selftest  # the numeric unit checks live beside this file
        return reference_selftest.run_self_test()
    if not (args.model and args.tokens and args.out):
        parser.error("--model, --tokens and --out are required (or --self-test)")
    try:
        tokens = parse_tokens(args.tokens)
        if args.mtp and len(tokens) < 2:
            raise ValueError("[reference] --mtp needs at least 2 tokens")
        cfg = DeepSeekConfig.load(args.model)
        if args.mtp and cfg.num_nextn_predict_layers < 1:
            raise ConfigError(f"[reference] --mtp: {args.model} has no MTP module (num_nextn_predict_layers)")
        options = ForwardOptions(rounding=ActivationRounding(args.precision, args.kv_b_exact))
        weights = Weights(cfg, args.model, None if args.dequant_round == "none" else args.dequant_round)
        logits, mtp_logits = forward_all_logits(cfg, weights, tokens, options, 1 if args.mtp else 0)
        save_logits(args.out, logits, "logits")
        if args.mtp:
            save_logits(args.mtp, mtp_logits[0], "MTP logits")
    except (ConfigError, st.SafetensorsError, ValueError) as e:
        sys.stderr.write(f"deepseek_reference: error: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
