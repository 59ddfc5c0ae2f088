#!/usr/bin/env python3
"""Compare two logits .npy files ([n_tokens, vocab]); exit non-zero when they differ too much.

    compare_logits.py REFERENCE.npy CANDIDATE.npy [--atol 1e-4] [--rtol 1e-4] [--label NAME]

Prints the max absolute difference, the max difference relative to the largest reference logit
(`normalised`), where the worst element is, and whether the argmax token agrees at every position.
Fails (exit 1) when shapes differ, either file holds non-finite values, max |diff| > atol, or
max |diff| / max |reference| > rtol. Both bounds matter: `atol` is the target for logits of order 1;
`rtol` keeps the test meaningful when a checkpoint's init makes logits small (max |ref| << 1).
Exit 2 on unreadable input.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np as st  # noqa: E402  (re-executes with an interpreter that has numpy)

np = st.np


def compare(reference, candidate, atol, rtol):
    """Returns (ok, lines of report)."""
    lines = []
    if reference.shape != candidate.shape:
        return False, [f"shape mismatch: reference {reference.shape} vs candidate {candidate.shape}"]
    if reference.ndim != 2:
        return False, [f"expected [n_tokens, vocab] logits, got shape {reference.shape}"]
    for label, array in (("reference", reference), ("candidate", candidate)):
        if not np.all(np.isfinite(array)):
            return False, [f"{label} has {int(np.sum(~np.isfinite(array)))} non-finite values"]
    ref = reference.astype(np.float64)
    diff = np.abs(candidate.astype(np.float64) - ref)
    max_abs = float(diff.max())
    scale = float(np.abs(ref).max())
    normalised = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
    argmax_agree = int(np.sum(np.argmax(ref, axis=1) == np.argmax(candidate, axis=1)))
    lines.append(f"shape {list(ref.shape)}, max |reference| {scale:.4g}, std {float(ref.std()):.4g}")
    lines.append(f"max |diff| {max_abs:.3e} (atol {atol:.1e}) at token {worst[0]}, vocab {worst[1]}: "
                 f"reference {ref[worst]:.6g}, candidate {float(candidate[worst]):.6g}")
    lines.append(f"max |diff| / max |reference| {normalised:.3e} (rtol {rtol:.1e}); "
                 f"mean |diff| {float(diff.mean()):.3e}")
    lines.append(f"argmax agrees at {argmax_agree}/{ref.shape[0]} positions")
    ok = max_abs <= atol and normalised <= rtol
    return ok, lines


def main(argv=None):
    parser = argparse.ArgumentParser(description="Compare two logits .npy files")
    parser.add_argument("reference")
    parser.add_argument("candidate")
    parser.add_argument("--atol", type=float, default=1e-4, help="bound on max |diff| (default 1e-4)")
    parser.add_argument("--rtol", type=float, default=1e-4,
                        help="bound on max |diff| / max |reference| (default 1e-4)")
    parser.add_argument("--label", default="", help="name printed with the result")
    args = parser.parse_args(argv)
    prefix = f"[{args.label}] " if args.label else ""
    try:
        reference = np.load(args.reference)
        candidate = np.load(args.candidate)
    except (OSError, ValueError) as e:
        print(f"{prefix}compare_logits: cannot read input: {e}")
        return 2
    ok, lines = compare(reference, candidate, args.atol, args.rtol)
    for line in lines:
        print(f"{prefix}{line}")
    print(f"{prefix}{'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
