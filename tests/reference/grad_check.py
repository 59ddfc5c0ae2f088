#!/usr/bin/env python3
"""Check `dsv3 grads` output against central finite differences of the independent float64 NumPy
reference forward (deepseek_reference.py), which knows nothing of our backward pass.

    grad_check.py --model DIR --tokens 1,7,42 --grads GRADS.safetensors [--rtol 1e-3] [--atol 1e-4]

Objective: the mean next-token cross-entropy of the main model over the token list (positions 0..n-2
predicting tokens 1..n-1), computed in float64 by the reference. For every gradient tensor in the file
(keyed by Hugging Face names) it checks two elements: the one with the largest |gradient| and one at
random, plus (--samples) more at random:

    |g - fd| <= rtol * |fd| + atol * max|g of that tensor|       (fd = (L(w+h) - L(w-h)) / 2h)

The default bounds suit gradients computed in float32 (relative errors ~1e-5 from float32 sums over a
few hundred terms; 1e-3 leaves two orders of margin yet catches any wrong term). Use --rtol 1e-6
--atol 1e-8 for `dsv3 grads --precision f64`. The file must also hold every main-model tensor and
its metadata loss must equal the reference loss. Exit 1 on any failure, 2 on unreadable input.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np as st  # noqa: E402  (re-executes with an interpreter that has numpy)
import deepseek_reference as ref  # noqa: E402

np = st.np


class CachedWeights:
    """The reference's weight source, read once into float64 arrays that can be perturbed in place."""

    def __init__(self, cfg, model_dir):
        self.inner = ref.Weights(cfg, model_dir)
        self.values = {}

    def has(self, name):
        return self.inner.has(name)

    def get(self, name, shape):
        if name not in self.values:
            self.values[name] = np.array(self.inner.get(name, shape), dtype=np.float64)
        return self.values[name]


def mean_cross_entropy(cfg, weights, tokens):
    logits = ref.forward_logits(cfg, weights, tokens[:-1])
    targets = np.asarray(tokens[1:])
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return float(-log_probs[np.arange(len(targets)), targets].mean())


def main(argv=None):
    parser = argparse.ArgumentParser(description="Finite-difference check of dsv3 grads output")
    parser.add_argument("--model", required=True)
    parser.add_argument("--tokens", required=True)
    parser.add_argument("--grads", required=True)
    parser.add_argument("--rtol", type=float, default=1e-3)
    parser.add_argument("--atol", type=float, default=1e-4, help="times the tensor's largest |gradient|")
    parser.add_argument("--step", type=float, default=1e-5)
    parser.add_argument("--samples", type=int, default=0, help="extra random elements per tensor")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    try:
        tokens = ref.parse_tokens(args.tokens)
        cfg = ref.DeepSeekConfig.load(args.model)
        weights = CachedWeights(cfg, args.model)
        grads = st.SafetensorsFile(args.grads)
    except (ref.ConfigError, st.SafetensorsError, ValueError, OSError) as e:
        sys.stderr.write(f"grad_check: error: {e}\n")
        return 2
    if len(tokens) < 2:
        sys.stderr.write("grad_check: error: need at least 2 tokens\n")
        return 2

    base = mean_cross_entropy(cfg, weights, tokens)  # also loads every tensor the forward reads
    failures = []
    claimed = float(grads.metadata.get("main_loss", "nan"))
    if not abs(claimed - base) <= 1e-5 * max(1.0, abs(base)):
        failures.append(f"loss: dsv3 {claimed!r} vs reference {base!r}")
    missing = sorted(set(weights.values) - set(grads.names()))
    if missing:
        failures.append(f"{len(missing)} tensors the forward uses have no gradient, e.g. {missing[:3]}")

    rng = np.random.default_rng(args.seed)
    checked = 0
    worst = 0.0
    for name in grads.names():
        g = np.asarray(st.decode(grads.raw(name), grads.dtype(name)), dtype=np.float64)
        if name not in weights.values:
            # Not read by the main model's forward (MTP modules; the correction bias is read): zero gradient.
            if np.any(g != 0):
                failures.append(f"{name}: nonzero gradient for a tensor the main loss does not use")
            continue
        w = weights.values[name]
        if list(w.shape) != list(g.shape):
            failures.append(f"{name}: gradient shape {list(g.shape)} vs parameter {list(w.shape)}")
            continue
        if name.endswith("e_score_correction_bias"):  # selection only: no gradient by definition
            if np.any(g != 0):
                failures.append(f"{name}: the correction bias must have no gradient")
            continue
        flat_w, flat_g = w.reshape(-1), g.reshape(-1)
        scale = float(np.max(np.abs(flat_g))) if flat_g.size else 0.0
        picks = {int(np.argmax(np.abs(flat_g))), int(rng.integers(flat_g.size))}
        picks.update(int(i) for i in rng.integers(flat_g.size, size=args.samples))
        for i in sorted(picks):
            saved = flat_w[i]
            flat_w[i] = saved + args.step
            up = mean_cross_entropy(cfg, weights, tokens)
            flat_w[i] = saved - args.step
            down = mean_cross_entropy(cfg, weights, tokens)
            flat_w[i] = saved
            fd = (up - down) / (2 * args.step)
            err = abs(flat_g[i] - fd)
            bound = args.rtol * abs(fd) + args.atol * scale + 1e-12
            worst = max(worst, err / bound)
            checked += 1
            if err > bound:
                failures.append(f"{name}[{i}]: dsv3 {flat_g[i]:.9g} vs finite difference {fd:.9g} "
                                f"(|diff| {err:.3g} > bound {bound:.3g})")
    print(f"grad_check: loss {base:.9g}; {checked} elements of {len(grads.names())} tensors checked; "
          f"worst error / bound = {worst:.3g}")
    for f in failures[:20]:
        print(f"  FAIL {f}")
    if failures:
        print(f"grad_check: {len(failures)} failure(s)")
        return 1
    print("grad_check: PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
