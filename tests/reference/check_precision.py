#!/usr/bin/env python3
"""Check `dsv3 logits --precision bf16|fp8` (main and MTP logits) against the float64 reference, both
exact and with dsv3's activation rounding emulated (activation_rounding.py).

    check_precision.py --model DIR --precision bf16|fp8 [--kv-b-exact]
                       --tokens T1 --dsv3 L1.npy --dsv3-mtp M1.npy [--tokens T2 --dsv3 ... ...]

For each token list, three sets of logits per row (position) of the main and of the MTP logits, each
kind checked on its own: dsv3's d, the emulating reference's r
(the same rounding points, float64 arithmetic otherwise) and the exact reference's x. Per row the
relative error of the logit vector, rel(a, b) = ||a - b|| / ||b|| (2-norm over the vocabulary).

What rounding does to the logits, and the bounds (measured values in docs/REFERENCE.md):

  Rounding to nearest in a format with unit roundoff u (BF16 u = 2^-9, E4M3 u = 2^-4: 8 and 4
  significant bits) makes an absolute error uniform over +-half an ulp; relative to a value whose
  significand m is spread over [1, 2), its RMS is u * sqrt(E[1/m^2] / 3) = u / sqrt(6). A projection
  y = W round(x) passes that on: the error of y_i is sum_j W_ij x_j d_j, RMS u/sqrt(6) * |y_i| when the
  terms are incoherent. Errors of successive roundings on the path to the logits add in quadrature;
  the longest path has S roundings: 5 per block (q_a, q_b or kv_a, kv_b, o_proj, gate/up, down; the
  absorbed form leaves kv_b exact, one fewer) over the main layers and the MTP block, plus eh_proj
  and the head. With gain about 1 per stage (the residual stream and the RMSNorms keep relative
  errors; attention and SwiGLU mix them without growth):
      rel(d, x) ~ eps = sqrt(S_e4m3 * (2^-4)^2 / 6 + S_bf16 * (2^-9)^2 / 6)
  v3_mtp, BF16 (3 layers + MTP, S = 22): eps = 3.7e-3.  v3_fp8_edges (2 layers + MTP, S = 17):
  bf16: eps = 3.3e-3; fp8 (16 projection stages E4M3, the head BF16): eps = 0.102.
  (b) the median row has rel(d, x) <= 3 * eps (the gain-1 estimate is an order of magnitude, not a
      worst case; observed medians are 0.4-1.4 eps). Not every row: rounding can move a token to
      another expert (a discontinuity no error bound covers; the report counts the token lists where
      the reference's own routing changes).

  dsv3 against the emulation. Where dsv3's float32 value of a rounded activation and the reference's
  float64 value fall on the same side of every rounding boundary, d and r differ only by float32
  arithmetic: the f32 logits agree with the float64 reference to ~1e-6 relative (logits_reference.sh).
  Where one of the ~10^4 rounded values behind a row lies within float32 noise of a boundary, the two
  round it one ulp apart and the row differs by about one rounding error's worth (or more, when it
  tips a routing decision); that is not a bug and cannot be emulated away: observed in up to half of
  the rows, more at later positions, which see more rounded values through attention. So:
  (a) at least a quarter of the rows agree to  rel(d, r) <= TAU = 1e-5  (10x the float32 noise), and
  (c) on those rows the rounding itself is visible:  rel(r, x) >= 30 * TAU  (agreement with r is not
      agreement with x).
  A rounding dsv3 makes and the reference does not (or the reverse), or a wrong FP8 scale, changes
  every row by ~eps and leaves no row within TAU: (a) fails.
Exit 1 on a failed check, 2 on unreadable input.
"""

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np as st  # noqa: E402  (re-executes with an interpreter that has numpy)
import deepseek_reference as ref  # noqa: E402
from activation_rounding import ActivationRounding  # noqa: E402

np = st.np

TAU = 1e-5               # (a): float32 agreement of a row without emulation ties (header)
CLEAN_FRACTION = 0.25    # (a): rows that must agree to TAU
VISIBLE = 30 * TAU       # (c): the rounding moves a clean row at least this much
MEDIAN_BOUND = 3         # (b): the median row within this many eps of the exact reference
UNIT_ROUNDOFF = {"bf16": 2.0 ** -9, "e4m3": 2.0 ** -4}


def expected_error(cfg, precision):
    """eps of the header: the RMS relative error the activation rounding gives the logits, from the
    roundings on the longest path to the MTP logits: 5 projections per block, eh_proj, the head."""
    blocks = cfg.num_hidden_layers + cfg.num_nextn_predict_layers
    projections = 5 * blocks + (1 if cfg.num_nextn_predict_layers else 0)
    u_projection = UNIT_ROUNDOFF["e4m3" if precision == "fp8" and cfg.fp8 else "bf16"]
    u_head = UNIT_ROUNDOFF["bf16"]  # the head's weights are BF16 in every checkpoint
    return math.sqrt((projections * u_projection ** 2 + u_head ** 2) / 6)


def row_errors(a, b):
    """rel(a, b) per row."""
    return np.linalg.norm(a - b, axis=-1) / np.linalg.norm(b, axis=-1)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Check dsv3's bf16/fp8 logits against the float64 reference")
    parser.add_argument("--model", required=True)
    parser.add_argument("--precision", choices=["bf16", "fp8"], required=True)
    parser.add_argument("--kv-b-exact", action="store_true", help="dsv3 ran the absorbed attention form")
    parser.add_argument("--tokens", action="append", required=True)
    parser.add_argument("--dsv3", action="append", required=True, help="dsv3's logits for the matching --tokens")
    parser.add_argument("--dsv3-mtp", action="append", required=True, help="dsv3's MTP logits (--mtp)")
    parser.add_argument("--label", default="")
    args = parser.parse_args(argv)
    prefix = f"[{args.label}] " if args.label else ""
    try:
        if not len(args.tokens) == len(args.dsv3) == len(args.dsv3_mtp):
            raise ValueError("give one --dsv3 and one --dsv3-mtp per --tokens")
        cfg = ref.DeepSeekConfig.load(args.model)
        weights = ref.Weights(cfg, args.model)
        lists = [ref.parse_tokens(t) for t in args.tokens]
        dsv3 = [(np.load(a).astype(np.float64), np.load(m).astype(np.float64)) for a, m in zip(args.dsv3, args.dsv3_mtp)]
    except (ref.ConfigError, st.SafetensorsError, ValueError, OSError) as e:
        sys.stderr.write(f"check_precision: error: {e}\n")
        return 2

    rounding = ActivationRounding(args.precision, args.kv_b_exact)
    eps = expected_error(cfg, args.precision)
    # Per row, for the main logits and the MTP logits separately: rel(d, r), rel(d, x), rel(r, x).
    errors = {"main": ([], [], []), "MTP": ([], [], [])}
    rerouted = 0
    for tokens, (d_main, d_mtp) in zip(lists, dsv3):
        exact_routes, emulated_routes = [], []
        x_main, (x_mtp,) = ref.forward_all_logits(cfg, weights, tokens, ref.ForwardOptions(routes=exact_routes), 1)
        r_main, (r_mtp,) = ref.forward_all_logits(cfg, weights, tokens,
                                                  ref.ForwardOptions(rounding=rounding, routes=emulated_routes), 1)
        if d_main.shape != x_main.shape or d_mtp.shape != x_mtp.shape:
            sys.stderr.write(f"check_precision: error: dsv3 logits {d_main.shape}/{d_mtp.shape} for {len(tokens)} "
                             f"tokens; expected {x_main.shape}/{x_mtp.shape}\n")
            return 2
        rerouted += not all(np.array_equal(a, b) for a, b in zip(exact_routes, emulated_routes))
        for kind, d, r, x in (("main", d_main, r_main, x_main), ("MTP", d_mtp, r_mtp, x_mtp)):
            to_emulated, to_exact, emulated_to_exact = errors[kind]
            to_emulated.append(row_errors(d, r))
            to_exact.append(row_errors(d, x))
            emulated_to_exact.append(row_errors(r, x))

    failures = []
    print(f"{prefix}{len(lists)} token lists; eps = {eps:.3g}; {rerouted} list(s) route some token differently "
          f"with rounding")
    for kind, lists_of_rows in errors.items():
        to_emulated, to_exact, emulated_to_exact = (np.concatenate(rows) for rows in lists_of_rows)
        clean = to_emulated <= TAU
        print(f"{prefix}{kind} (a) rel(dsv3, emulated) <= {TAU:g} on {int(clean.sum())}/{clean.size} rows "
              f"(need {CLEAN_FRACTION:.0%}); median {np.median(to_emulated):.2e}, max {to_emulated.max():.2e}")
        if clean.mean() < CLEAN_FRACTION:
            failures.append(f"{kind} (a): only {int(clean.sum())} of {clean.size} rows agree with the emulation")
        if clean.any():
            visible = emulated_to_exact[clean].min()
            print(f"{prefix}{kind} (c) on those rows rel(emulated, exact) >= {visible:.2e} (need {VISIBLE:g})")
            if visible < VISIBLE:
                failures.append(f"{kind} (c): the rounding moves a row that agrees with the emulation by only "
                                f"{visible:.2e}")
        median = float(np.median(to_exact))
        print(f"{prefix}{kind} (b) rel(dsv3, exact): median {median:.2e} = {median / eps:.2f} eps (bound "
              f"{MEDIAN_BOUND} eps = {MEDIAN_BOUND * eps:.3g}), max {to_exact.max():.2e}")
        if median > MEDIAN_BOUND * eps:
            failures.append(f"{kind} (b): the median row is {median:.2e} from the exact reference")
    for f in failures:
        print(f"{prefix}  FAIL {f}")
    print(f"{prefix}{'FAIL' if failures else 'PASS'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
