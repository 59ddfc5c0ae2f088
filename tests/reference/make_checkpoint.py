#!/usr/bin/env python3
"""Write a small random DeepSeek-V3/V2 checkpoint in Hugging Face layout (NumPy only).

    make_checkpoint.py --config CONFIG.json --out DIR [--fp8] [--shard-mb N] [--seed S] [--dtype bf16|f32]

Writes DIR/config.json and the tensors of SPEC.md section 1: embedding, per layer the norms, MLA
projections (q_a/q_a_layernorm/q_b or q_proj), dense MLP or router (+ correction bias for noaux_tc),
routed and shared experts; the MTP layers model.layers.{num_hidden_layers + k} when
num_nextn_predict_layers > 0; final norm and lm_head. With --fp8 every projection (the "linear"
tensors) is stored as F8_E4M3 with an F32 `weight_scale_inv` per block (value x scale; edge blocks
partial) and config.json gets DeepSeek's quantization_config; embeddings, head, norms and router stay
BF16, the correction bias F32. With --shard-mb the tensors go to model-0000i-of-0000n.safetensors
files of at most that size plus model.safetensors.index.json.

The random weights are scaled so that activations and logits are O(1): projections ~ N(0, 1/in),
embedding ~ N(0, 1), norm weights ~ 1 + N(0, 0.1^2), correction bias ~ N(0, 0.1^2).
This script is independent of the C++ `dsv3 init` (it is used to test the reference and, in
tests/cli/logits_reference.sh, the C++ loader).
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np as st  # noqa: E402  (re-executes with an interpreter that has numpy)
from deepseek_reference import DeepSeekConfig  # noqa: E402

np = st.np

FP8_QUANTIZATION_CONFIG = {
    "activation_scheme": "dynamic",
    "fmt": "e4m3",
    "quant_method": "fp8",
    "weight_block_size": [128, 128],
}


def tensor_specs(cfg):
    """[(name, shape, role)] with role in embedding, head, linear, norm, router_gate, router_bias."""
    h, v, nh = cfg.hidden_size, cfg.vocab_size, cfg.num_attention_heads
    specs = [("model.embed_tokens.weight", [v, h], "embedding")]

    def mlp(prefix, inter):
        specs.extend([(prefix + "gate_proj.weight", [inter, h], "linear"),
                      (prefix + "up_proj.weight", [inter, h], "linear"),
                      (prefix + "down_proj.weight", [h, inter], "linear")])

    def block(layer):
        p = f"model.layers.{layer}."
        a = p + "self_attn."
        specs.append((p + "input_layernorm.weight", [h], "norm"))
        if cfg.q_lora_rank:
            specs.extend([(a + "q_a_proj.weight", [cfg.q_lora_rank, h], "linear"),
                          (a + "q_a_layernorm.weight", [cfg.q_lora_rank], "norm"),
                          (a + "q_b_proj.weight", [nh * cfg.qk_head_dim, cfg.q_lora_rank], "linear")])
        else:
            specs.append((a + "q_proj.weight", [nh * cfg.qk_head_dim, h], "linear"))
        specs.extend([
            (a + "kv_a_proj_with_mqa.weight", [cfg.kv_lora_rank + cfg.qk_rope_head_dim, h], "linear"),
            (a + "kv_a_layernorm.weight", [cfg.kv_lora_rank], "norm"),
            (a + "kv_b_proj.weight", [nh * (cfg.qk_nope_head_dim + cfg.v_head_dim), cfg.kv_lora_rank], "linear"),
            (a + "o_proj.weight", [h, nh * cfg.v_head_dim], "linear"),
            (p + "post_attention_layernorm.weight", [h], "norm")])
        if cfg.is_moe_layer(layer):
            specs.append((p + "mlp.gate.weight", [cfg.n_routed_experts, h], "router_gate"))
            if cfg.topk_method == "noaux_tc":
                specs.append((p + "mlp.gate.e_score_correction_bias", [cfg.n_routed_experts], "router_bias"))
            for e in range(cfg.n_routed_experts):
                mlp(f"{p}mlp.experts.{e}.", cfg.moe_intermediate_size)
            if cfg.n_shared_experts > 0:
                mlp(p + "mlp.shared_experts.", cfg.moe_intermediate_size * cfg.n_shared_experts)
        else:
            mlp(p + "mlp.", cfg.intermediate_size)

    for layer in range(cfg.num_hidden_layers):
        block(layer)
    for k in range(cfg.num_nextn_predict_layers):
        layer = cfg.num_hidden_layers + k
        p = f"model.layers.{layer}."
        specs.extend([(p + "embed_tokens.weight", [v, h], "embedding"),
                      (p + "enorm.weight", [h], "norm"),
                      (p + "hnorm.weight", [h], "norm"),
                      (p + "eh_proj.weight", [h, 2 * h], "linear")])
        block(layer)
        specs.extend([(p + "shared_head.norm.weight", [h], "norm"),
                      (p + "shared_head.head.weight", [v, h], "head")])
    specs.append(("model.norm.weight", [h], "norm"))
    if not cfg.tie_word_embeddings:
        specs.append(("lm_head.weight", [v, h], "head"))
    return specs


def random_tensor(rng, shape, role):
    if role == "embedding":
        return rng.standard_normal(shape)
    if role == "norm":
        return 1.0 + 0.1 * rng.standard_normal(shape)
    if role == "router_bias":
        return 0.1 * rng.standard_normal(shape)
    # linear, head, router_gate: [out, in] with unit-variance outputs for unit-variance inputs
    return rng.standard_normal(shape) / np.sqrt(shape[-1])


def storage(values, role, dtype, fp8, block, ue8m0):
    """[(name suffix, safetensors dtype, stored array)] for one tensor."""
    if fp8 and role == "linear":
        codes, scale = st.quantize_blocks(values, block, power_of_two_scales=ue8m0)
        return [("", "F8_E4M3", codes), ("_scale_inv", "F32", scale)]
    if dtype == "f64":
        return [("", "F64", values)]
    if dtype == "f32" or role == "router_bias":
        return [("", "F32", values.astype(np.float32))]
    return [("", "BF16", st.float_to_bf16_bits(values))]


def write_checkpoint(config, out_dir, fp8=False, shard_mb=0.0, seed=0, dtype="bf16", overrides=None,
                     skip=lambda name: False):
    """Writes the checkpoint; returns the list of files written. `overrides` maps tensor names to
    float arrays used instead of random values; `skip(name)` leaves tensors out (for tests)."""
    config = dict(config)
    if fp8:
        q = dict(config.get("quantization_config") or FP8_QUANTIZATION_CONFIG)
        config["quantization_config"] = q
    elif (config.get("quantization_config") or {}).get("quant_method") == "fp8":
        fp8 = True
    config["torch_dtype"] = "bfloat16" if dtype == "bf16" else "float32"
    cfg = DeepSeekConfig(config, "config")
    ue8m0 = fp8 and config["quantization_config"].get("scale_fmt") == "ue8m0"
    rng = np.random.default_rng(seed)
    overrides = overrides or {}

    tensors = []  # (name, dtype, array) in write order
    for name, shape, role in tensor_specs(cfg):
        values = random_tensor(rng, shape, role)  # always drawn, so overrides do not shift the others
        if name in overrides:
            values = np.asarray(overrides[name], dtype=np.float64).reshape(shape)
        if skip(name):
            continue
        for suffix, sdtype, array in storage(values, role, dtype, fp8, cfg.weight_block, ue8m0):
            tensors.append((name + suffix, sdtype, array))

    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")

    shards = [[]]
    shard_bytes = 0
    limit = shard_mb * 1024 * 1024
    for item in tensors:
        size = item[2].nbytes
        if limit > 0 and shards[-1] and shard_bytes + size > limit:
            shards.append([])
            shard_bytes = 0
        shards[-1].append(item)
        shard_bytes += size

    written = []
    if limit <= 0:
        path = os.path.join(out_dir, "model.safetensors")
        st.write_safetensors(path, {n: (d, a) for n, d, a in shards[0]}, {"format": "pt"})
        return [path]
    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
        file_name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        total += st.write_safetensors(os.path.join(out_dir, file_name), {n: (d, a) for n, d, a in shard},
                                      {"format": "pt"})
        weight_map.update({n: file_name for n, _, _ in shard})
        written.append(os.path.join(out_dir, file_name))
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
        f.write("\n")
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description="Write a small random DeepSeek checkpoint in HF layout")
    parser.add_argument("--config", required=True, help="config.json (Hugging Face field names)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--fp8", action="store_true", help="block-scaled F8_E4M3 projections")
    parser.add_argument("--shard-mb", type=float, default=0.0, help="shard size limit in MiB (0: one file)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=["bf16", "f32", "f64"], default="bf16")
    args = parser.parse_args(argv)
    try:
        with open(args.config) as f:
            config = json.load(f)
        files = write_checkpoint(config, args.out, args.fp8, args.shard_mb, args.seed, args.dtype)
    except (OSError, json.JSONDecodeError, ValueError) as e:
        sys.stderr.write(f"make_checkpoint: error: {e}\n")
        return 1
    except Exception as e:  # ConfigError and friends
        sys.stderr.write(f"make_checkpoint: error: {e}\n")
        return 1
    print(f"make_checkpoint: wrote {args.out} ({len(files)} safetensors file(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
