#!/usr/bin/env python3
"""Independent float64 reference for DeepSeek-V3 / V2 next-token logits (NumPy only).

Reads a Hugging Face checkpoint directory (config.json + safetensors, BF16 or block-scaled FP8,
single file or sharded) and computes the logits at every position of a token list, following the
semantics of DeepSeek's inference/model.py and Hugging Face's modeling_deepseek.py (SPEC.md
section 1). Everything is computed in float64 and written plainly, one concept per function:
RMSNorm, YaRN RoPE on interleaved pairs, MLA in its naive form, SwiGLU, the V3 and V2 routers, MoE.
The multi-token-prediction layers stored after the main layers are not used for logits.

    deepseek_reference.py --model DIR --tokens 1,2,3 --out logits.npy   # float32 [n_tokens, vocab]
    deepseek_reference.py --self-test                                    # numeric unit checks

See docs/REFERENCE.md.
"""

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np as st  # noqa: E402  (re-executes with an interpreter that has numpy)

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
    """x [..., in] times weight [out, in]^T -> [..., out] (the HF/PyTorch weight layout)."""
    return x @ weight.T


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
    """Float64 tensors from a checkpoint by HF name (SPEC.md section 1), FP8 dequantized."""

    def __init__(self, cfg, model_dir, dequant_round=None):
        self.cfg = cfg
        self.ckpt = st.Checkpoint(model_dir, cfg.weight_block)
        self.dequant_round = dequant_round  # None, or "bf16": round dequantized FP8 weights to BF16

    def has(self, name):
        return self.ckpt.has(name)

    def get(self, name, shape):
        value = self.ckpt.float64(name, shape)
        if self.dequant_round == "bf16" and self.ckpt.dtype(name).startswith("F8"):
            value = st.round_to_bf16(value)
        return value


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
        a["q_a"] = w.get(p + "q_a_proj.weight", [cfg.q_lora_rank, h])
        a["q_a_norm"] = w.get(p + "q_a_layernorm.weight", [cfg.q_lora_rank])
        a["q_b"] = w.get(p + "q_b_proj.weight", [nh * cfg.qk_head_dim, cfg.q_lora_rank])
    else:
        a["q"] = w.get(p + "q_proj.weight", [nh * cfg.qk_head_dim, h])
    a["kv_a"] = w.get(p + "kv_a_proj_with_mqa.weight", [cfg.kv_lora_rank + cfg.qk_rope_head_dim, h])
    a["kv_a_norm"] = w.get(p + "kv_a_layernorm.weight", [cfg.kv_lora_rank])
    a["kv_b"] = w.get(p + "kv_b_proj.weight", [nh * (cfg.qk_nope_head_dim + cfg.v_head_dim), cfg.kv_lora_rank])
    a["o"] = w.get(p + "o_proj.weight", [h, nh * cfg.v_head_dim])
    return a


def mla_project(cfg, a, x, positions):
    """Queries, latent and rope key of x [T, H]: q_nope [T,nh,nope], q_rope [T,nh,rope] (rotated),
    c_kv [T,kv_lora] (normalised), k_rope [T,rope] (rotated, shared by all heads)."""
    t, nh = x.shape[0], cfg.num_attention_heads
    if cfg.q_lora_rank:
        q = linear(rms_norm(linear(x, a["q_a"]), a["q_a_norm"], cfg.rms_norm_eps), a["q_b"])
    else:
        q = linear(x, a["q"])
    q = q.reshape(t, nh, cfg.qk_head_dim)
    q_nope, q_rope = q[..., :cfg.qk_nope_head_dim], q[..., cfg.qk_nope_head_dim:]
    kv = linear(x, a["kv_a"])
    c_kv = rms_norm(kv[:, :cfg.kv_lora_rank], a["kv_a_norm"], cfg.rms_norm_eps)
    k_rope = kv[:, cfg.kv_lora_rank:]
    inv_freq, amp = rope_inverse_frequencies(cfg), rope_amplitude(cfg)
    return q_nope, apply_rope(q_rope, positions, inv_freq, amp), c_kv, apply_rope(k_rope, positions, inv_freq, amp)


def causal_softmax(scores):
    """scores [nh, T, T] (query i, key j); keys j > i masked out."""
    t = scores.shape[-1]
    masked = np.where(np.triu(np.ones((t, t), dtype=bool), k=1), -np.inf, scores)
    return softmax(masked, axis=-1)


def mla_forward(cfg, a, x, positions):
    """Naive MLA: expand the latent into per-head keys and values, then ordinary attention."""
    t, nh = x.shape[0], cfg.num_attention_heads
    q_nope, q_rope, c_kv, k_rope = mla_project(cfg, a, x, positions)
    kv = linear(c_kv, a["kv_b"]).reshape(t, nh, cfg.qk_nope_head_dim + cfg.v_head_dim)
    k_nope, v = kv[..., :cfg.qk_nope_head_dim], kv[..., cfg.qk_nope_head_dim:]
    scores = np.einsum("ihd,jhd->hij", q_nope, k_nope) + np.einsum("ihr,jr->hij", q_rope, k_rope)
    probs = causal_softmax(scores * attention_softmax_scale(cfg))
    out = np.einsum("hij,jhd->ihd", probs, v)  # [T, nh, v_head_dim]
    return linear(out.reshape(t, nh * cfg.v_head_dim), a["o"])


def mla_forward_absorbed(cfg, a, x, positions):
    """Absorbed MLA (SPEC.md section 1), used only to cross-check mla_forward in the self-test:
    queries move into latent space through W_kvb's key part; values come out through its value part."""
    t, nh = x.shape[0], cfg.num_attention_heads
    q_nope, q_rope, c_kv, k_rope = mla_project(cfg, a, x, positions)
    kv_b = a["kv_b"].reshape(nh, cfg.qk_nope_head_dim + cfg.v_head_dim, cfg.kv_lora_rank)
    w_k, w_v = kv_b[:, :cfg.qk_nope_head_dim], kv_b[:, cfg.qk_nope_head_dim:]
    q_latent = np.einsum("ihd,hdc->ihc", q_nope, w_k)
    scores = np.einsum("ihc,jc->hij", q_latent, c_kv) + np.einsum("ihr,jr->hij", q_rope, k_rope)
    probs = causal_softmax(scores * attention_softmax_scale(cfg))
    latent_out = np.einsum("hij,jc->ihc", probs, c_kv)
    out = np.einsum("ihc,hdc->ihd", latent_out, w_v)
    return linear(out.reshape(t, nh * cfg.v_head_dim), a["o"])


# ---------------------------------------------------------------------------------------------
# Feed-forward: SwiGLU, router, MoE
# ---------------------------------------------------------------------------------------------

def swiglu(x, gate, up, down):
    """down(silu(gate x) * up x)."""
    return linear(silu(linear(x, gate)) * linear(x, up), down)


def load_mlp(w, prefix, hidden, inter):
    return (w.get(prefix + "gate_proj.weight", [inter, hidden]),
            w.get(prefix + "up_proj.weight", [inter, hidden]),
            w.get(prefix + "down_proj.weight", [hidden, inter]))


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


def moe_forward(cfg, m, x):
    """sum over chosen experts of weight * expert(x), plus the shared experts."""
    indices, weights = route(cfg, linear(x, m["gate"]), m["bias"])
    y = np.zeros_like(x)
    for expert in np.unique(indices):
        tokens, slot = np.nonzero(indices == expert)
        y[tokens] += swiglu(x[tokens], *m["experts"][expert]) * weights[tokens, slot][:, None]
    if m["shared"] is not None:
        y += swiglu(x, *m["shared"])
    return y


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------

def forward_hidden(cfg, w, tokens, attention=mla_forward):
    """Hidden states after the last main layer (before the final norm), [T, H]."""
    h = cfg.hidden_size
    tokens = np.asarray(tokens, dtype=np.int64)
    if tokens.ndim != 1 or tokens.size == 0:
        raise ValueError("[reference] tokens must be a non-empty list")
    if tokens.min() < 0 or tokens.max() >= cfg.vocab_size:
        raise ValueError(f"[reference] token ids must be in [0, {cfg.vocab_size}); got {tokens.min()}..{tokens.max()}")
    x = w.get("model.embed_tokens.weight", [cfg.vocab_size, h])[tokens]
    positions = np.arange(tokens.size)
    # Only the main layers: model.layers.{num_hidden_layers + k} are the MTP modules, unused for logits.
    for layer in range(cfg.num_hidden_layers):
        p = layer_prefix(layer)
        attn_in = rms_norm(x, w.get(p + "input_layernorm.weight", [h]), cfg.rms_norm_eps)
        x = x + attention(cfg, load_attention(cfg, w, layer), attn_in, positions)
        ffn_in = rms_norm(x, w.get(p + "post_attention_layernorm.weight", [h]), cfg.rms_norm_eps)
        if cfg.is_moe_layer(layer):
            x = x + moe_forward(cfg, load_moe(cfg, w, layer), ffn_in)
        else:
            x = x + swiglu(ffn_in, *load_mlp(w, p + "mlp.", h, cfg.intermediate_size))
    return x


def forward_logits(cfg, w, tokens, attention=mla_forward):
    """Next-token logits at every position, float64 [T, vocab]."""
    x = forward_hidden(cfg, w, tokens, attention)
    x = rms_norm(x, w.get("model.norm.weight", [cfg.hidden_size]), cfg.rms_norm_eps)
    head_name = "model.embed_tokens.weight" if cfg.tie_word_embeddings else "lm_head.weight"
    return linear(x, w.get(head_name, [cfg.vocab_size, cfg.hidden_size]))


def model_logits(model_dir, tokens, dequant_round=None):
    cfg = DeepSeekConfig.load(model_dir)
    return forward_logits(cfg, Weights(cfg, model_dir, dequant_round), tokens)


def parse_tokens(text):
    try:
        tokens = [int(t) for t in text.replace(" ", "").split(",") if t != ""]
    except ValueError as e:
        raise ValueError(f"[reference] --tokens must be comma-separated integers, got {text!r}") from e
    if not tokens:
        raise ValueError("[reference] --tokens is empty")
    return tokens


def main(argv=None):
    parser = argparse.ArgumentParser(description="Float64 NumPy reference logits for DeepSeek-V3/V2 checkpoints")
    parser.add_argument("--model", help="checkpoint directory (config.json + safetensors)")
    parser.add_argument("--tokens", help="comma-separated token ids, e.g. 1,2,3")
    parser.add_argument("--out", help="output .npy, float32 [n_tokens, vocab]")
    parser.add_argument("--dequant-round", choices=["none", "bf16"], default="none",
                        help="round dequantized FP8 weights to BF16 (what model.py's bf16 GEMM path does)")
    parser.add_argument("--self-test", action="store_true", help="run the numeric unit checks and exit")
    args = parser.parse_args(argv)
    if args.self_test:
        import reference_selftest  # the numeric unit checks live beside this file
        return reference_selftest.run_self_test()
    if not (args.model and args.tokens and args.out):
        parser.error("--model, --tokens and --out are required (or --self-test)")
    try:
        tokens = parse_tokens(args.tokens)
        logits = model_logits(args.model, tokens, None if args.dequant_round == "none" else args.dequant_round)
    except (ConfigError, st.SafetensorsError, ValueError) as e:
        sys.stderr.write(f"deepseek_reference: error: {e}\n")
        return 1
    if not np.all(np.isfinite(logits)):
        sys.stderr.write("deepseek_reference: error: non-finite logits\n")
        return 1
    np.save(args.out, logits.astype(np.float32))
    print(f"deepseek_reference: wrote {args.out} [{logits.shape[0]}, {logits.shape[1]}] "
          f"(max |logit| {np.max(np.abs(logits)):.4g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
