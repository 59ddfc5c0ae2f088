#!/usr/bin/env python3
"""An independent NumPy check of `dsv3 quantize --fp8` (DeepSeek's block-scaled FP8, SPEC.md sections 1 and 3).

    quantize_reference.py self-test
    quantize_reference.py perturb DIR          # write hard blocks into a few weights of a BF16/F32 checkpoint
    quantize_reference.py check IN OUT --scale-fmt float|ue8m0

`check` re-quantizes every projection weight of IN with the straightforward rule below and requires
`dsv3 quantize`'s codes and scales in OUT to be bit-identical; every other tensor must be byte-identical,
and config.json must carry DeepSeek's quantization_config. Which tensors are projections is decided here
from the names alone (*_proj.weight, *_proj_with_mqa.weight: attention, MLP, experts, MTP eh_proj), not
from dsv3's own tables.

The rule, per 128x128 block of the weight (edge blocks partial), all in float32 as DeepSeek's kernels:
    w     = the stored value widened to float32 (exact for BF16/F16)
    s     = max(amax(|w|), 1e-4) / 448                    scale_fmt float (DeepSeek-V3)
    s     = 2^ceil(log2 s)                                scale_fmt ue8m0 (DeepSeek-V3.1)
    code  = e4m3(w / s)                                   float32 division, then one rounding
e4m3 (OCP "fn": bias 7, 3 mantissa bits, max 448, no infinities) rounds to the nearest value, ties to the
even code, saturating at +-448, keeping the sign of zero (-tiny -> 0x80, as torch's cast does). The
encoder here works from the binade: quantum = 2^(e-3) for |x| in [2^e, 2^(e+1)), e >= -6 (below that the
subnormal quantum 2^-9), and np.rint (half to even) on |x| / quantum. Its self-test checks it against the
value table and against safetensors_np.float_to_e4m3_bits (a second, search-based encoder).
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np as st  # noqa: E402  (re-executes with an interpreter that has numpy)

np = st.np

BLOCK = 128
E4M3_MAX = 448.0
AMAX_FLOOR = np.float32(1e-4)
QUANTIZATION_CONFIG = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                       "weight_block_size": [128, 128]}


def is_projection(name):
    return name.endswith("_proj.weight") or name.endswith("_proj_with_mqa.weight")


# ---------------------------------------------------------------------------------------------
# E4M3 encoding
# ---------------------------------------------------------------------------------------------

def e4m3_encode(x):
    """float32 array -> (uint8 codes, bool mask of exact ties). Nearest, ties to even, saturating."""
    x = np.asarray(x, dtype=np.float32).astype(np.float64)  # exact
    if not np.all(np.isfinite(x)):
        raise ValueError("e4m3_encode: non-finite input")
    a = np.abs(x)
    frac, exp = np.frexp(a)                 # a = frac * 2^exp, frac in [0.5, 1) (0 -> exp 0)
    binade = np.maximum(exp - 1, -6)        # a in [2^binade, 2^(binade+1)); subnormals share 2^-6's quantum
    steps = np.ldexp(a, 3 - binade)         # a / quantum, exact (power-of-two scaling)
    tie = (steps - np.floor(steps)) == 0.5
    m = np.rint(steps)                      # half to even; an even m is an even mantissa code
    value = np.minimum(np.ldexp(m, binade - 3), E4M3_MAX)  # saturate (448 + 16 and above would round to 480)
    # value -> code: subnormals m * 2^-9 (m < 8), normals exponent field e + 7 and mantissa (value/2^e - 1) * 8
    vfrac, vexp = np.frexp(value)
    e = vexp - 1
    normal = value >= 2.0 ** -6
    mantissa = np.where(normal, np.ldexp(value, -np.where(normal, e, 0)) * 8 - 8, np.ldexp(value, 9))
    code = np.where(normal, ((e + 7) << 3) + mantissa, mantissa).astype(np.int64)
    assert np.all((code >= 0) & (code <= 0x7E))
    code = code | np.where(np.signbit(x), 0x80, 0)
    return code.astype(np.uint8), tie & (a < E4M3_MAX)


def block_amax(w):
    """[rows, cols] float32 -> [ceil(rows/128), ceil(cols/128)] max |w| per block (zero padding is neutral)."""
    rows, cols = w.shape
    br, bc = -(-rows // BLOCK), -(-cols // BLOCK)
    padded = np.zeros((br * BLOCK, bc * BLOCK), dtype=np.float32)
    padded[:rows, :cols] = np.abs(w)
    return padded.reshape(br, BLOCK, bc, BLOCK).max(axis=(1, 3))


def quantize(w, ue8m0):
    """float32 [rows, cols] -> (codes, float32 scales, statistics dict)."""
    amax = block_amax(w)
    scale = np.maximum(amax, AMAX_FLOOR) / np.float32(E4M3_MAX)  # float32 arithmetic
    if ue8m0:
        scale = np.exp2(np.ceil(np.log2(scale.astype(np.float64)))).astype(np.float32)
    rows, cols = w.shape
    expanded = np.repeat(np.repeat(scale, BLOCK, axis=0)[:rows], BLOCK, axis=1)[:, :cols]
    quotient = (w / expanded).astype(np.float32)  # float32 / float32: one IEEE rounding
    codes, ties = e4m3_encode(quotient)
    stats = {
        "ties": int(ties.sum()),
        "subnormal": int(np.count_nonzero(((codes & 0x78) == 0) & ((codes & 0x7) != 0))),
        "negative_zero": int(np.count_nonzero(codes == 0x80)),
        "saturated": int(np.count_nonzero(np.abs(quotient.astype(np.float64)) > E4M3_MAX)),
        "floor_blocks": int(np.count_nonzero(amax < AMAX_FLOOR)),
        "floor_blocks_nonzero": int(np.count_nonzero((amax < AMAX_FLOOR) & (amax > 0))),
    }
    return codes, scale, stats


# ---------------------------------------------------------------------------------------------
# Self-test of the encoder
# ---------------------------------------------------------------------------------------------

def self_test():
    table = st.E4M3_TABLE[:0x7F]  # non-negative finite values, increasing with the code
    codes = np.arange(0x7F)
    # Every value maps to its own code, in both signs.
    got, _ = e4m3_encode(table.astype(np.float32))
    assert np.array_equal(got, codes.astype(np.uint8)), "values must encode to their codes"
    got, _ = e4m3_encode(-table.astype(np.float32))
    assert np.array_equal(got, (codes | 0x80).astype(np.uint8)), "negative values (and -0) keep the sign"
    # Midpoints (exactly representable in float32) go to the even code; their float32 neighbours to the nearer.
    mid = ((table[:-1] + table[1:]) / 2).astype(np.float32)
    got, ties = e4m3_encode(mid)
    lower = codes[:-1]
    expect = np.where(lower % 2 == 0, lower, lower + 1)
    assert np.array_equal(got, expect.astype(np.uint8)) and ties.all(), "midpoints must round to even"
    got, _ = e4m3_encode(np.nextafter(mid, np.float32(0)))
    assert np.array_equal(got, lower.astype(np.uint8)), "just below a midpoint rounds down"
    got, _ = e4m3_encode(np.nextafter(mid, np.float32(np.inf)))
    assert np.array_equal(got, (lower + 1).astype(np.uint8)), "just above a midpoint rounds up"
    # Saturation: everything from 448 up is 448 (0x7E); the 448/480 midpoint too.
    big = np.array([448, 449, 463.99, 464, 465, 1e6, 3.0e38], dtype=np.float32)
    got, _ = e4m3_encode(np.concatenate([big, -big]))
    assert np.array_equal(got, np.array([0x7E] * 7 + [0xFE] * 7, dtype=np.uint8)), "saturation"
    # Random float32 over the whole range against the search-based encoder (which drops the sign of zero).
    rng = np.random.default_rng(0)
    x = (rng.choice([-1.0, 1.0], 200000) * np.exp2(rng.uniform(-14, 10, 200000))).astype(np.float32)
    got, _ = e4m3_encode(x)
    other = st.float_to_e4m3_bits(x)
    assert np.array_equal(np.where(got == 0x80, 0, got), other), "disagrees with safetensors_np's encoder"
    print("self-test: e4m3 encoder agrees with the value table (all 127 values, 126 midpoints and their "
          "float32 neighbours, saturation, signed zero) and with safetensors_np on 200000 random floats")


# ---------------------------------------------------------------------------------------------
# perturb: hard blocks in a checkpoint
# ---------------------------------------------------------------------------------------------

def to_storage(values, dtype):
    return st.float_to_bf16_bits(values) if dtype == "BF16" else np.asarray(values, dtype=np.float32)


def perturb(directory):
    """Overwrites blocks of the first attention projection and the first MLP down projection with values
    that reach the rule's corners; rewrites the shards holding them (tensor names and files unchanged)."""
    ckpt = st.Checkpoint(directory)
    names = sorted(n for n in ckpt.names() if is_projection(n))
    q_a = next(n for n in names if n.endswith("self_attn.q_a_proj.weight") or n.endswith("self_attn.q_proj.weight"))
    down = next(n for n in names if n.endswith("mlp.down_proj.weight"))
    rng = np.random.default_rng(1)
    changed = {}

    w = st.decode(ckpt.raw(q_a), ckpt.dtype(q_a)).astype(np.float32)
    rows, cols = w.shape
    assert rows > BLOCK and cols > BLOCK and rows % BLOCK and cols % BLOCK, f"{q_a} {w.shape} needs partial blocks"
    # Block (0, 0): amax exactly 448, so s = 1 and w / s = w: log-uniform magnitudes 2^-12 .. 2^8.8 hit exact
    # ties (BF16 keeps 8 significant bits, E4M3 4), subnormal codes and values that round to (signed) zero.
    b = st.round_to_bf16(rng.choice([-1.0, 1.0], (BLOCK, BLOCK)) * np.exp2(rng.uniform(-12, 8.8, (BLOCK, BLOCK))))
    b = b.astype(np.float32)  # BF16 values also for an F32 checkpoint, so ties occur there too
    b[3, 5] = 448.0
    w[:BLOCK, :BLOCK] = b
    # Block (0, last), partial width: amax below the 1e-4 floor (s = 1e-4/448, not amax/448).
    w[:BLOCK, BLOCK * (cols // BLOCK):] = (rng.standard_normal((BLOCK, cols % BLOCK)) * 1e-5).astype(np.float32)
    # Block (last, last), partial both ways: all zeros with some negative zeros (floor scale, codes 0 / 0x80).
    corner = np.zeros((rows % BLOCK, cols % BLOCK), dtype=np.float32)
    corner[::2, ::3] = -0.0
    w[BLOCK * (rows // BLOCK):, BLOCK * (cols // BLOCK):] = corner
    changed[q_a] = w

    w = st.decode(ckpt.raw(down), ckpt.dtype(down)).astype(np.float32)
    # Block (0, 0): one large outlier, so the other values land in E4M3's subnormal range or round to zero.
    w[7, 11] = -1.0e4
    changed[down] = w

    for file_name in sorted({ckpt.location[n] for n in changed}):
        f = ckpt.files[file_name]
        tensors = {}
        for name in f.names():
            dtype = f.dtype(name)
            tensors[name] = (dtype, to_storage(changed[name], dtype) if name in changed else np.array(f.raw(name)))
        path = os.path.join(directory, file_name)
        st.write_safetensors(path + ".tmp", tensors, metadata={"format": "pt"})
        os.replace(path + ".tmp", path)
    print(f"perturbed {q_a} (blocks with amax 448, amax < 1e-4, all zero) and {down} (outlier -1e4)")


# ---------------------------------------------------------------------------------------------
# check
# ---------------------------------------------------------------------------------------------

def check(in_dir, out_dir, scale_fmt):
    ue8m0 = scale_fmt == "ue8m0"
    with open(os.path.join(out_dir, "config.json")) as f:
        out_config = json.load(f)
    with open(os.path.join(in_dir, "config.json")) as f:
        in_config = json.load(f)
    want = dict(QUANTIZATION_CONFIG, **({"scale_fmt": "ue8m0"} if ue8m0 else {}))
    failures = []
    if out_config.pop("quantization_config", None) != want:
        failures.append(f"config.json quantization_config is not {want}")
    if out_config != in_config:
        failures.append("config.json fields other than quantization_config changed")

    src, dst = st.Checkpoint(in_dir), st.Checkpoint(out_dir)
    expected_names = set(src.names()) | {n + "_scale_inv" for n in src.names() if is_projection(n)}
    if set(dst.names()) != expected_names:
        extra, missing = set(dst.names()) - expected_names, expected_names - set(dst.names())
        failures.append(f"output tensors differ: extra {sorted(extra)[:3]}, missing {sorted(missing)[:3]}")
    totals = {"tensors": 0, "codes": 0, "scales": 0, "code_mismatches": 0, "scale_mismatches": 0, "copied": 0}
    exercised = {}
    for name in sorted(src.names()):
        if not dst.has(name):
            continue
        if not is_projection(name):
            same = src.dtype(name) == dst.dtype(name) and np.array_equal(src.raw(name), dst.raw(name))
            if not same:
                failures.append(f"{name}: must be copied unchanged")
            totals["copied"] += 1
            continue
        if dst.dtype(name) != "F8_E4M3" or not dst.has(name + "_scale_inv") or \
                dst.dtype(name + "_scale_inv") != "F32":
            failures.append(f"{name}: expected F8_E4M3 with an F32 {name}_scale_inv")
            continue
        w = st.decode(src.raw(name), src.dtype(name)).astype(np.float32)
        codes, scale, stats = quantize(w, ue8m0)
        got_codes = np.asarray(dst.raw(name))
        got_scale = np.asarray(dst.raw(name + "_scale_inv"))
        if got_scale.shape != scale.shape or got_codes.shape != codes.shape:
            failures.append(f"{name}: shapes {got_codes.shape}/{got_scale.shape}, expected {codes.shape}/{scale.shape}")
            continue
        bad_codes = int(np.count_nonzero(got_codes != codes))
        bad_scales = int(np.count_nonzero(got_scale.view(np.uint32) != scale.view(np.uint32)))
        if bad_codes or bad_scales:
            i = np.argwhere(got_codes != codes)[:1].tolist()
            failures.append(f"{name}: {bad_codes} codes and {bad_scales} scales differ (first code at {i})")
        totals["tensors"] += 1
        totals["codes"] += codes.size
        totals["scales"] += scale.size
        totals["code_mismatches"] += bad_codes
        totals["scale_mismatches"] += bad_scales
        for key, value in stats.items():
            exercised[key] = exercised.get(key, 0) + value

    print(f"{scale_fmt}: {totals['tensors']} weights, {totals['codes']} codes and {totals['scales']} scales compared: "
          f"{totals['code_mismatches']} codes and {totals['scale_mismatches']} scales differ; "
          f"{totals['copied']} other tensors byte-identical")
    print("  exercised: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in exercised.items()))
    if totals["tensors"] == 0:
        failures.append("no projection weights found")
    for key in ("ties", "subnormal", "negative_zero", "floor_blocks", "floor_blocks_nonzero"):
        if exercised.get(key, 0) == 0:
            failures.append(f"the checkpoint did not exercise '{key}' (run `perturb` on it first)")
    for f in failures[:20]:
        print("FAIL " + f)
    return 1 if failures else 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("self-test")
    p = sub.add_parser("perturb")
    p.add_argument("dir")
    c = sub.add_parser("check")
    c.add_argument("input")
    c.add_argument("output")
    c.add_argument("--scale-fmt", choices=["float", "ue8m0"], default="float")
    args = parser.parse_args(argv)
    if args.command == "self-test":
        self_test()
        return 0
    if args.command == "perturb":
        perturb(args.dir)
        return 0
    return check(args.input, args.output, args.scale_fmt)


if __name__ == "__main__":
    sys.exit(main())
