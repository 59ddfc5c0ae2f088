#!/usr/bin/env python3
"""Check `dsv3 grads` output against central finite differences of the independent float64 NumPy
reference forward (deepseek_reference.py), which knows nothing of dsv3's backward pass.

    grad_check.py --model DIR --tokens 1,7,42 --grads A.safetensors [--grads B.safetensors ...]
                  [--small 64] [--largest 2] [--sample 6] [--seed 0]

Objective, as src/train/train_step.cpp defines it for one sequence t_0..t_S (no balance loss):
    L = mean_i CE(main logits_i, t_{i+1})  +  lambda/D * sum_k mean_i CE(MTP_k logits_i, t_{i+2+k})
main over i = 0..S-1; MTP module k over i = 0..S-2-k, its input Emb(t_{i+1+k}) and the previous
depth's hidden state (deepseek_reference.mtp_forward), D = the config's num_nextn_predict_layers,
lambda = the files' "mtp_lambda" metadata (dsv3 grads --mtp-lambda; 0 leaves the MTP modules out).
The MTP modules read the main model's embedding and head: training stores them once, so the
checkpoint's copies are ignored and the gradient file holds the sum under the main names.

Which elements: every element of tensors with at most --small (64) elements; of larger ones the
--largest (2) elements of largest |gradient| and a fixed random sample of --sample (6) elements
(seeded, the same for every file). All of them are differenced once, and every --grads file (the
float32 and float64 computations of dsv3 grads, told apart by the file's "precision" metadata) is
checked against the same differences. An element whose +-h perturbation changes which experts a
token is routed to has no derivative to compare with (routing is piecewise constant); it is skipped
and counted. The correction bias must have a zero gradient (selection only).

Error model and bounds. Every element must satisfy
    |g - fd| <= REL * (|g| + 0.1 * max|g of the tensor|) + E_fd
REL is the relative accuracy of dsv3's gradient (by the file's precision, below). The second term
charges every element a tenth of its tensor's largest gradient: an element is a sum of chain-rule
terms, and where they cancel, its rounding error scales with the terms (of the size of the tensor's
typical gradients), not with |g|.

  Finite difference. fd = (L(w+h) - L(w-h)) / 2h, h = STEP = 1e-4. Truncation: h^2/6 * |L^(3)|.
  Rounding: L(w+-h) are float64 with errors |dL| of a few ulps of |L| (~10), and the difference
  carries |dL| / h. Measured on v3_mtp (fd at h = 1e-2 ... 1e-7 against h = 1e-5): |dL| ~ 1e-15,
  |L^(3)| <~ 1e-2. Charged with 100x margins:
      E_fd = STEP^2/6 * 1 + 1e-13 / STEP = 1.0e-9 + 1.7e-9 = 2.7e-9

  float32 gradients (dsv3 grads --precision f32, the training arithmetic). Each gradient is a chain of
  float32 sums; a sum of n terms errs by at most n * 2^-24 * sum|terms| (all roundings of one sign)
  and typically by sqrt(n) * 2^-24 * sum|terms| (independent roundings), and the stages' errors add.
  The reductions on the longest path: the head's over the vocabulary (V), then per block about three
  over at most max(2H, intermediate) (projections' inner dimensions; eh_proj's is 2H):
      n_eff = V + 3 * blocks * max(2H, intermediate)     (v3_mtp: 1000 + 3 * 4 * 512 = 7144)
  Worst case n_eff * 2^-24 = 4e-4; typical sqrt(n_eff) * 2^-24 = 5e-6. REL = 10 * sqrt(n_eff) * 2^-24
  (5e-5): ten times the typical accumulation, well below the worst case that real sums never reach,
  and far below the error of a wrong or missing term (of order |g|).

  float64 gradients (--precision f64). The double arithmetic itself errs by ~1e-15, but two float32
  roundings remain: the file stores float32 (2^-24 |g|), and dsv3 rotates with float32 RoPE tables,
  as DeepSeek's model.py and HF compute them (frequencies and cos/sin in float32; the reference uses
  float64): angles off by up to position * theta * 2^-24 <= S * 2^-24 (theta <= 1) plus the cos/sin
  rounding 2^-24, a relative perturbation of the rotated inputs that the gradients inherit at most
  proportionally. REL = 2^-24 + (S + 1) * 2^-24 for S positions (v3_mtp, S = 8: 6e-7).

The file's metadata must hold the same losses: `main_loss`, `mtp_loss` (per module) and `loss` equal
the reference's main cross-entropy, MTP cross-entropies and total objective to REL * |L| (the loss is a
mean of log-sum-exps of logits carrying the same relative errors). Exit 1 on any failure, 2 on
unreadable input.
"""

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np as st  # noqa: E402  (re-executes with an interpreter that has numpy)
import deepseek_reference as ref  # noqa: E402

np = st.np

STEP = 1e-4                                    # finite-difference step (header)
FD_ERROR = STEP ** 2 / 6 * 1.0 + 1e-13 / STEP  # E_fd: truncation with |L^(3)| <= 1, rounding |dL| <= 1e-13
CANCELLATION = 0.1                             # share of the tensor's largest |g| charged to every element
F32_EPS = 2.0 ** -24


def relative_accuracy(cfg, positions, precision):
    """REL of the header for dsv3 grads --precision `precision`."""
    if precision == "f64":
        return F32_EPS + (positions + 1) * F32_EPS
    blocks = cfg.num_hidden_layers + cfg.num_nextn_predict_layers
    n_eff = cfg.vocab_size + 3 * blocks * max(2 * cfg.hidden_size, cfg.intermediate_size)
    return 10 * n_eff ** 0.5 * F32_EPS


class Objective:
    """The training loss of one token list as a function of the reference's weights. It keeps the
    residual stream entering every main layer and the inputs of every MTP module from the unperturbed
    weights, so that after a change to one tensor only the part of the model after it is recomputed."""

    def __init__(self, cfg, weights, tokens, mtp_lambda):
        self.cfg, self.w = cfg, weights
        self.tokens = np.asarray(tokens, dtype=np.int64)
        self.inputs, self.targets = self.tokens[:-1], self.tokens[1:]
        self.positions = np.arange(self.inputs.size)
        self.mtp_lambda = mtp_lambda
        self.depth = cfg.num_nextn_predict_layers if mtp_lambda > 0 else 0
        n_layers = cfg.num_hidden_layers
        if self.depth:
            for k in range(self.depth):  # training's shared storage (train_model.cpp)
                p = ref.layer_prefix(n_layers + k)
                weights.share(p + "embed_tokens.weight", "model.embed_tokens.weight")
                weights.share(p + "shared_head.head.weight", ref.head_projection_name(cfg))
        self.layer_inputs = [None] * (n_layers + 1)
        self.layer_routes = [None] * n_layers
        self.mtp_previous = [None] * self.depth
        self.mtp_routes = [None] * self.depth
        self.main_ce, self.mtp_ce = None, [None] * self.depth
        self.loss, _ = self._evaluate(("main", 0), keep=True)

    def stage(self, name):
        """Where a change to tensor `name` starts to matter: ("main", layer) or ("mtp", module)."""
        match = re.match(r"model\.layers\.(\d+)\.", name)
        n_layers = self.cfg.num_hidden_layers
        if match:
            layer = int(match.group(1))
            return ("mtp", layer - n_layers) if layer >= n_layers else ("main", layer)
        if name == "model.embed_tokens.weight":
            return ("main", 0)
        return ("main", n_layers)  # model.norm, lm_head

    def value(self, name):
        """(loss, whether every token was routed to the same experts) with the current weights."""
        return self._evaluate(self.stage(name), keep=False)

    def _evaluate(self, stage, keep):
        cfg, w = self.cfg, self.w
        kind, start = stage
        same_routes = True
        if kind == "main":
            x = ref.embed(cfg, w, self.inputs) if start == 0 else self.layer_inputs[start]
            for layer in range(start, cfg.num_hidden_layers):
                if keep:
                    self.layer_inputs[layer] = x
                options = ref.ForwardOptions(routes=[])
                x = ref.decoder_block(cfg, w, layer, x, self.positions, options)
                if keep:
                    self.layer_routes[layer] = options.routes
                else:
                    same_routes &= all(np.array_equal(a, b) for a, b in zip(options.routes, self.layer_routes[layer]))
            if keep:
                self.layer_inputs[cfg.num_hidden_layers] = x
            hidden = ref.final_norm(cfg, w, x)
            main_ce = float(ref.cross_entropy(ref.project(hidden, ref.head_projection(cfg, w)), self.targets).mean())
            first_module, previous = 0, hidden
        else:
            main_ce, first_module, previous = self.main_ce, start, self.mtp_previous[start]
        mtp_ce = list(self.mtp_ce)
        for k in range(first_module, self.depth):
            if keep:
                self.mtp_previous[k] = previous
            options = ref.ForwardOptions(routes=[])
            logits, previous = ref.mtp_forward(cfg, w, k, self.inputs, previous, options)
            mtp_ce[k] = float(ref.cross_entropy(logits, self.tokens[2 + k:]).mean())
            if keep:
                self.mtp_routes[k] = options.routes
            else:
                same_routes &= all(np.array_equal(a, b) for a, b in zip(options.routes, self.mtp_routes[k]))
        if keep:
            self.main_ce, self.mtp_ce = main_ce, mtp_ce
        loss = main_ce + (self.mtp_lambda / self.depth * sum(mtp_ce) if self.depth else 0.0)
        return loss, same_routes


def central_difference(objective, name, flat_w, i, h):
    """(L(w+h) - L(w-h)) / 2h for element i, and whether routing stayed the same at both points."""
    saved = flat_w[i]
    flat_w[i] = saved + h
    up, same_up = objective.value(name)
    flat_w[i] = saved - h
    down, same_down = objective.value(name)
    flat_w[i] = saved
    return (up - down) / (2 * h), same_up and same_down


def picked_elements(g, rng, small, largest, sample):
    """Every element of a small tensor; else the `largest` of largest |g| and `sample` at random."""
    flat = g.reshape(-1)
    if flat.size <= small:
        return list(range(flat.size))
    picks = set(int(i) for i in np.argsort(-np.abs(flat), kind="stable")[:largest])
    picks.update(int(i) for i in rng.choice(flat.size, size=min(sample, flat.size), replace=False))
    return sorted(picks)


class GradFile:
    def __init__(self, path):
        self.path = path
        self.file = st.SafetensorsFile(path)
        self.precision = self.file.metadata.get("precision")
        if self.precision not in ("f32", "f64"):
            raise ValueError(f"{path}: metadata 'precision' is {self.precision!r}, expected f32 or f64")
        self.mtp_lambda = float(self.file.metadata.get("mtp_lambda", "nan"))
        self.mtp_loss = [float(v) for v in self.file.metadata.get("mtp_loss", "").split(",") if v]
        self.rel = None  # relative_accuracy, once the config is known
        self.worst = 0.0
        self.failures = []

    def gradient(self, name):
        return np.asarray(st.decode(self.file.raw(name), self.file.dtype(name)), dtype=np.float64)

    def bound(self, g, tensor_max):
        return self.rel * (abs(g) + CANCELLATION * tensor_max) + FD_ERROR

    def check(self, what, g, fd, bound):
        err = abs(g - fd)
        self.worst = max(self.worst, err / bound)
        if not err <= bound:
            self.failures.append(f"{what}: dsv3 {g:.9g} vs finite difference {fd:.9g} "
                                 f"(|diff| {err:.3g} > bound {bound:.3g})")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Finite-difference check of dsv3 grads output")
    parser.add_argument("--model", required=True)
    parser.add_argument("--tokens", required=True)
    parser.add_argument("--grads", required=True, action="append", help="a dsv3 grads file (repeatable)")
    parser.add_argument("--small", type=int, default=64, help="tensors with at most this many elements: all")
    parser.add_argument("--largest", type=int, default=2, help="elements of largest |gradient| per larger tensor")
    parser.add_argument("--sample", type=int, default=6, help="random elements per larger tensor")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    try:
        tokens = ref.parse_tokens(args.tokens)
        if len(tokens) < 3:
            raise ValueError("need at least 3 tokens")
        cfg = ref.DeepSeekConfig.load(args.model)
        weights = ref.Weights(cfg, args.model)
        files = [GradFile(path) for path in args.grads]
        mtp_lambda = files[0].mtp_lambda
        if not all(f.mtp_lambda == mtp_lambda for f in files) or not mtp_lambda >= 0:
            raise ValueError(f"the files' mtp_lambda metadata {[f.mtp_lambda for f in files]} differ or are missing")
    except (ref.ConfigError, st.SafetensorsError, ValueError, OSError) as e:
        sys.stderr.write(f"grad_check: error: {e}\n")
        return 2

    objective = Objective(cfg, weights, tokens, mtp_lambda)  # reads every tensor the loss uses
    names = sorted(set().union(*(set(f.file.names()) for f in files)))
    for f in files:
        f.rel = relative_accuracy(cfg, len(tokens) - 1, f.precision)
        claims = [("main_loss", float(f.file.metadata.get("main_loss", "nan")), objective.main_ce),
                  ("loss", float(f.file.metadata.get("loss", "nan")), objective.loss)]
        if len(f.mtp_loss) != objective.depth:
            f.failures.append(f"mtp_loss: {len(f.mtp_loss)} values for {objective.depth} MTP module(s)")
        claims += [(f"mtp_loss[{k}]", claimed, want) for k, (claimed, want) in enumerate(zip(f.mtp_loss, objective.mtp_ce))]
        for key, claimed, want in claims:
            if not abs(claimed - want) <= f.rel * abs(want):
                f.failures.append(f"{key}: dsv3 {claimed!r} vs reference {want!r}")
        missing = sorted(set(weights.values) - set(f.file.names()))
        if missing:
            f.failures.append(f"{len(missing)} tensors the objective uses have no gradient, e.g. {missing[:3]}")

    rng = np.random.default_rng(args.seed)
    checked = skipped = 0
    for name in names:
        grads = [f.gradient(name) if name in f.file.names() else None for f in files]
        reference = next(g for g in grads if g is not None)
        if name not in weights.values:  # not read by the objective: the gradient must be zero
            for f, g in zip(files, grads):
                if g is not None and np.any(g != 0):
                    f.failures.append(f"{name}: nonzero gradient for a tensor the objective does not use")
            continue
        w = weights.values[name]
        if name.endswith("e_score_correction_bias"):  # selection only: no gradient by definition
            for f, g in zip(files, grads):
                if g is not None and np.any(g != 0):
                    f.failures.append(f"{name}: the correction bias must have no gradient")
            continue
        for f, g in zip(files, grads):
            if g is not None and list(g.shape) != list(w.shape):
                f.failures.append(f"{name}: gradient shape {list(g.shape)} vs parameter {list(w.shape)}")
        flat_w = w.reshape(-1)
        for i in picked_elements(reference, rng, args.small, args.largest, args.sample):
            fd, same_routes = central_difference(objective, name, flat_w, i, STEP)
            if not same_routes:
                skipped += 1
                continue
            checked += 1
            for f, g in zip(files, grads):
                if g is None or list(g.shape) != list(w.shape):
                    continue
                flat_g = g.reshape(-1)
                tensor_max = float(np.max(np.abs(flat_g)))
                f.check(f"{name}[{i}]", float(flat_g[i]), fd, f.bound(float(flat_g[i]), tensor_max))

    print(f"grad_check: loss {objective.loss:.9g} (main {objective.main_ce:.9g}, MTP {objective.mtp_ce}); "
          f"{checked} elements of {len(names)} tensors differenced, {skipped} skipped (routing changes within "
          f"+-h)")
    status = 0
    for f in files:
        print(f"grad_check: {os.path.basename(f.path)} ({f.precision}, REL {f.rel:.2g}): worst |diff| / bound = "
              f"{f.worst:.3g}")
        for failure in f.failures[:20]:
            print(f"  FAIL {failure}")
        if f.failures:
            print(f"grad_check: {len(f.failures)} failure(s) in {f.path}")
            status = 1
    if skipped > checked // 10:
        print(f"grad_check: FAIL {skipped} of {checked + skipped} elements skipped for routing changes")
        status = 1
    print("grad_check: PASS" if status == 0 else "grad_check: FAIL")
    return status


if __name__ == "__main__":
    sys.exit(main())
