#!/usr/bin/env python3
"""Check what `dsv3 perplexity` prints against the float64 reference on the same windows.

    perplexity_reference.py --model DIR --data SHARDS --seq-len N [--windows W] [--split val]
                            --dsv3-output FILE

Reads the token shards independently (SHARDS/manifest.json: "splits" names each split's file and count,
"dtype" its uint16 or
uint32 little-endian ids; docs/DATA.md). Windows as tools/cmd_perplexity.cpp scores them: window w
(w = 0 .. W-1) is ids [w*N, w*N + N] of the split, N + 1 tokens, non-overlapping but for the one id
they share; W = min(--windows, (n - 1) / N), every window when --windows is 0. Each window is run from
an empty cache; position t predicts id t+1, so a window scores N targets, and the result is
    cross-entropy = mean over the W*N targets of -log softmax(logits_t)[target],  perplexity = e^CE.
The reference's logits come from deepseek_reference.forward_logits (float64).

FILE is dsv3's stdout, "cross-entropy X  perplexity Y  (W windows x N tokens of SPLIT, ...)". It must
report the same W and N, and
    |X - CE_ref| <= CE_TOL = 2 * 1e-4 + 5e-7
Derivation: dsv3's float32 logits are within 1e-4 of the float64 reference's (the bound
tests/cli/logits_reference.sh holds them to; observed ~3e-6). One position's cross-entropy is
log-sum-exp(logits) - logit[target]; log-sum-exp moves by at most max |d logit| (it is 1-Lipschitz in
the max norm) and the target logit by as much, so each term, and their mean, moves by at most twice
the logits' error. dsv3 sums the terms in double (error ~1e-16 relative) and prints 6 decimals
(+-5e-7). And Y must be e^X to its printed 4 decimals: |Y - e^X| <= e^X * 5e-7 + 5e-5.
Exit 1 on a mismatch, 2 on unreadable input.
"""

import argparse
import json
import math
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np as st  # noqa: E402  (re-executes with an interpreter that has numpy)
import deepseek_reference as ref  # noqa: E402

np = st.np

LOGITS_ATOL = 1e-4                 # tests/cli/logits_reference.sh
CE_TOL = 2 * LOGITS_ATOL + 5e-7    # header
DSV3_LINE = re.compile(r"cross-entropy (\S+)\s+perplexity (\S+)\s+\((\d+) windows x (\d+) tokens of (\w+)")


def read_split(shard_dir, split):
    """The split's token ids as int64, read from the files the manifest names."""
    with open(os.path.join(shard_dir, "manifest.json")) as f:
        manifest = json.load(f)
    dtype = {"uint16": "<u2", "uint32": "<u4"}[manifest["dtype"]]
    info = manifest["splits"][split]
    ids = np.fromfile(os.path.join(shard_dir, info["file"]), dtype=dtype).astype(np.int64)
    if ids.size != info["tokens"]:
        raise ValueError(f"{shard_dir}: {info['file']} holds {ids.size} ids, the manifest says {info['tokens']}")
    return ids


def reference_cross_entropy(cfg, weights, ids, seq_len, windows):
    """Mean cross-entropy over `windows` windows of seq_len + 1 ids (the header's windows)."""
    total = 0.0
    for w in range(windows):
        window = ids[w * seq_len: w * seq_len + seq_len + 1]
        total += float(ref.cross_entropy(ref.forward_logits(cfg, weights, window[:-1]), window[1:]).sum())
    return total / (windows * seq_len)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Check dsv3 perplexity output against the float64 reference")
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="token shard directory (dsv3 data)")
    parser.add_argument("--seq-len", type=int, required=True)
    parser.add_argument("--windows", type=int, default=0, help="as given to dsv3 perplexity (0: all)")
    parser.add_argument("--split", choices=["val", "train"], default="val")
    parser.add_argument("--dsv3-output", required=True, help="dsv3 perplexity's stdout")
    args = parser.parse_args(argv)
    try:
        cfg = ref.DeepSeekConfig.load(args.model)
        weights = ref.Weights(cfg, args.model)
        ids = read_split(args.data, args.split)
        with open(args.dsv3_output) as f:
            match = DSV3_LINE.search(f.read())
        if not match:
            raise ValueError(f"{args.dsv3_output}: no 'cross-entropy ... perplexity ...' line")
    except (ref.ConfigError, st.SafetensorsError, ValueError, OSError, KeyError) as e:
        sys.stderr.write(f"perplexity_reference: error: {e}\n")
        return 2
    available = (ids.size - 1) // args.seq_len
    windows = min(args.windows, available) if args.windows > 0 else available
    ce = reference_cross_entropy(cfg, weights, ids, args.seq_len, windows)
    dsv3_ce, dsv3_ppl = float(match.group(1)), float(match.group(2))
    dsv3_windows, dsv3_seq, dsv3_split = int(match.group(3)), int(match.group(4)), match.group(5)
    print(f"perplexity_reference: {windows} windows x {args.seq_len} tokens of {args.split} ({ids.size} ids): "
          f"reference cross-entropy {ce:.9f}, perplexity {math.exp(ce):.6f}")
    print(f"perplexity_reference: dsv3 cross-entropy {dsv3_ce:.6f} (|diff| {abs(dsv3_ce - ce):.2e}, "
          f"bound {CE_TOL:.2e}), perplexity {dsv3_ppl:.4f}")
    failures = []
    if (dsv3_windows, dsv3_seq, dsv3_split) != (windows, args.seq_len, args.split):
        failures.append(f"dsv3 scored {dsv3_windows} windows x {dsv3_seq} tokens of {dsv3_split}")
    if not abs(dsv3_ce - ce) <= CE_TOL:
        failures.append(f"cross-entropy {dsv3_ce} vs reference {ce:.9f}")
    if not abs(dsv3_ppl - math.exp(dsv3_ce)) <= math.exp(dsv3_ce) * 5e-7 + 5e-5:
        failures.append(f"perplexity {dsv3_ppl} is not e^{dsv3_ce} = {math.exp(dsv3_ce):.6f}")
    for failure in failures:
        print(f"  FAIL {failure}")
    print("perplexity_reference: " + ("FAIL" if failures else "PASS"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
