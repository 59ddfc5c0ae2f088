#!/usr/bin/env python3
"""Content checks of the dsv3 CLI's outputs, for tests/cli/*.sh: each subcommand compares what a
command wrote with what it must hold, computed another way, prints what it compared and exits 1 with
a FAIL line naming the difference. Only numpy and the standard library are used.

    cli_checks.py SUBCOMMAND ARGS...      (--help lists them; each one's docstring says what it checks)

Tolerances come with their derivation where they are defined.
"""

import argparse
import json
import math
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "reference"))
import safetensors_np as st  # noqa: E402  (re-executes with an interpreter that has numpy)
import png_np  # noqa: E402

np = st.np

# Two float32 computations of the same logits (another attention form, another row count) differ by
# rounding only: unit roundoff 2^-24 = 6e-8, dot products of K <= 128 terms err <= K*2^-24 = 8e-6
# relative (Higham), about ten such products in series through the small test models -> < 1e-4 of the
# largest logit (tests/cli/logits_reference.sh uses the same bound against float64).
LOGITS_RTOL = 1e-4


class CheckFailed(Exception):
    pass


def short(path):
    """The last two components of a path, enough to name a file in a test's work directory."""
    return os.path.join(*os.path.normpath(path).split(os.sep)[-2:])


def require(condition, message):
    if not condition:
        raise CheckFailed(message)


# ---------------------------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------------------------

def read_npy_f32(path, rows=None, cols=None):
    """A .npy file that must be little-endian float32, C order, 2-D (of shape [rows, cols] when given),
    with exactly its data after the header and only finite values."""
    with open(path, "rb") as f:
        data = f.read()
    require(data[:6] == b"\x93NUMPY", f"{short(path)}: not a .npy file (magic {data[:6]!r})")
    major = data[6]
    require(major in (1, 2, 3), f"{short(path)}: unknown .npy version {major}")
    size_bytes = 2 if major == 1 else 4
    header_len = int.from_bytes(data[8:8 + size_bytes], "little")
    start = 8 + size_bytes + header_len
    require(start % 16 == 0, f"{short(path)}: data starts at byte {start}, not 16-byte aligned as .npy requires")
    header = data[8 + size_bytes:start].decode("latin1")
    fields = re.fullmatch(r"\{'descr': '([^']*)', 'fortran_order': (True|False), 'shape': \(([0-9, ]*)\), \}\s*\n",
                          header)
    require(fields is not None, f"{short(path)}: malformed header {header!r}")
    shape = tuple(int(s) for s in fields.group(3).replace(" ", "").split(",") if s)
    require(fields.group(1) == "<f4" and fields.group(2) == "False",
            f"{short(path)}: descr {fields.group(1)}, fortran_order {fields.group(2)}: expected '<f4', False")
    require(len(shape) == 2, f"{short(path)}: shape {shape}, expected [n_tokens, vocab]")
    if rows is not None:
        require(shape == (rows, cols), f"{short(path)}: shape {shape}, expected ({rows}, {cols})")
    require(len(data) - start == 4 * shape[0] * shape[1],
            f"{short(path)}: {len(data) - start} data bytes for shape {shape} (expected {4 * shape[0] * shape[1]})")
    array = np.frombuffer(data[start:], dtype="<f4").reshape(shape)
    bad = int(np.sum(~np.isfinite(array)))
    require(bad == 0, f"{short(path)}: {bad} non-finite values")
    return array


def read_metrics(path):
    """(run header or None, step objects in file order) of a dsv3 train metrics file."""
    header, steps = None, []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            if record.get("type") == "run":
                header = record
            else:
                require("step" in record, f"{short(path)}:{number}: a line with neither \"type\": \"run\" nor \"step\"")
                steps.append(record)
    return header, steps


class ModelTensors(st.Checkpoint):
    """A checkpoint's model tensors: those of its index, or of its model*.safetensors files (a training
    checkpoint keeps optimizer.safetensors beside them)."""

    def __init__(self, directory):
        if os.path.exists(os.path.join(directory, "model.safetensors.index.json")):
            super().__init__(directory)
            return
        self.directory, self.block, self.files, self.location = directory, (128, 128), {}, {}
        for file_name in sorted(n for n in os.listdir(directory) if re.fullmatch(r"model.*\.safetensors", n)):
            for name in self._open(file_name).names():
                self.location[name] = file_name


def read_json(path):
    with open(path) as f:
        return json.load(f)


def run_dsv3(args, stdin=None):
    """Runs dsv3 with args; returns (stdout, stderr) as text, or fails naming the command."""
    done = subprocess.run(args, input=stdin, capture_output=True)
    require(done.returncode == 0, f"`{' '.join(args)}` exited {done.returncode}: {done.stderr.decode()[-400:]}")
    return done.stdout.decode("utf-8"), done.stderr.decode("utf-8")


def byte_decoder():
    """GPT-2's byte-level alphabet (printable stand-ins for the 256 bytes), inverted."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, codes)}


def decode_tokens(tokenizer_path, ids):
    """Token ids -> text with tokenizer.json's vocabulary (byte-level BPE; added tokens as their text),
    invalid UTF-8 replaced as dsv3 prints it."""
    tokenizer = read_json(tokenizer_path)
    pieces = {token: i for token, i in tokenizer["model"]["vocab"].items()}
    by_id = {i: token for token, i in pieces.items()}
    added = {t["id"]: t["content"] for t in tokenizer.get("added_tokens", [])}
    decoder = byte_decoder()
    raw = b""
    for i in ids:
        raw += added[i].encode() if i in added else bytes(decoder[ch] for ch in by_id[i])
    return raw.decode("utf-8", errors="replace")


def decodable_ids(tokenizer_path):
    """The ids tokenizer.json can decode (its vocabulary's and added tokens'), ascending: a model's
    vocab_size may be padded past them, and dsv3 never samples the others."""
    tokenizer = read_json(tokenizer_path)
    ids = set(tokenizer["model"]["vocab"].values()) | {t["id"] for t in tokenizer.get("added_tokens", [])}
    return np.array(sorted(ids), dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# Training: metrics, checkpoints, stop and resume
# ---------------------------------------------------------------------------------------------

def cmd_metrics(a):
    """The metrics file has exactly one line per step 1..N in order, finite losses, tokens = step x
    tokens per step; with --state, the checkpoint's trainer_state.json and optimizer state are at step N;
    with --same-losses-as, every step's losses equal (bit for bit) those of another run; with --kept,
    its first lines are those of an earlier copy of the file."""
    header, steps = read_metrics(a.file)
    require(header is not None, f"{short(a.file)}: no \"type\": \"run\" header line")
    numbers = [s["step"] for s in steps]
    require(numbers == list(range(1, a.steps + 1)),
            f"{short(a.file)}: step lines {numbers}, expected exactly 1..{a.steps}")
    options = header["options"]
    per_step = options["batch_size"] * options["seq_len"] * options["grad_accum"]
    for s in steps:
        for key in ("loss", "main_loss", "grad_norm", "lr"):
            require(math.isfinite(s[key]), f"{short(a.file)}: step {s['step']} {key} = {s[key]}")
        require(s["tokens"] == s["step"] * per_step,
                f"{short(a.file)}: step {s['step']} reports {s['tokens']} tokens, expected {s['step']} x {per_step}")
    print(f"{short(a.file)}: steps 1..{a.steps}, losses finite, {per_step} tokens per step")
    if a.state:
        state = read_json(os.path.join(a.state, "trainer_state.json"))
        require(state["step"] == a.steps and state["tokens"] == a.steps * per_step,
                f"{short(a.state)}/trainer_state.json: step {state['step']}, tokens {state['tokens']}; "
                f"expected step {a.steps}, tokens {a.steps * per_step}")
        optimizer = st.SafetensorsFile(os.path.join(a.state, "optimizer.safetensors"))
        adam_steps = optimizer.metadata.get("steps")
        require(adam_steps == str(a.steps),
                f"{short(a.state)}/optimizer.safetensors: AdamW steps {adam_steps}, expected {a.steps}")
        print(f"{short(a.state)}: trainer_state.json and optimizer.safetensors at step {a.steps}")
    if a.same_losses_as:
        _, other = read_metrics(a.same_losses_as)
        other_by_step = {s["step"]: s for s in other}
        for s in steps:
            o = other_by_step.get(s["step"])
            require(o is not None, f"{short(a.same_losses_as)} has no step {s['step']}")
            for key in ("loss", "main_loss", "mtp_loss", "grad_norm", "expert_load", "val_loss"):
                require(s.get(key) == o.get(key), f"step {s['step']} {key}: {s.get(key)} in {short(a.file)}, "
                        f"{o.get(key)} in {short(a.same_losses_as)}")
        print(f"losses, gradient norms, expert loads and val losses of every step equal {short(a.same_losses_as)}'s")
    if a.kept:
        _, earlier = read_metrics(a.kept)
        require(steps[:len(earlier)] == earlier,
                f"{short(a.file)}: its first {len(earlier)} step lines differ from those of {short(a.kept)}")
        print(f"its first {len(earlier)} step lines are those of {short(a.kept)}")


def cmd_fp8_train(a):
    """FP8 training's step lines are finite and its step-1 losses are close to BF16 training's from the
    same weights and batch, but not equal (the FP8 GEMMs ran)."""
    header, fp8 = read_metrics(a.fp8)
    _, bf16 = read_metrics(a.bf16)
    require(header["options"]["precision"] == "fp8", f"{short(a.fp8)}: precision {header['options']['precision']}")
    for s in fp8:
        values = [s["loss"], s["main_loss"], s["grad_norm"]] + list(s["mtp_loss"])
        require(all(math.isfinite(v) for v in values),
                f"{short(a.fp8)}: step {s['step']} has non-finite values {values}")
    # E4M3 rounds each GEMM operand within 2^-4 relative, so a logit moves by <= 2*2^-4 of the largest
    # (|logit| <= 0.15 from this config's initial weights, init std 0.006), and the cross-entropy by at
    # most twice that: 2 * 2 * 2^-4 * 0.15 = 0.019, under 0.5% of a loss near ln(vocab).
    rtol = 0.005
    for key in ("main_loss", "loss"):
        x, y = fp8[0][key], bf16[0][key]
        require(abs(x - y) <= rtol * abs(y), f"step 1 {key}: FP8 {x}, BF16 {y}, relative {abs(x - y) / y:.2e} > {rtol}")
        require(x != y, f"step 1 {key}: FP8 equals BF16 bit for bit ({x}): the FP8 GEMMs did not run")
        print(f"step 1 {key}: FP8 {x:.6f}, BF16 {y:.6f}, relative difference {abs(x - y) / y:.1e} <= {rtol}")


# ---------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------

def cmd_png(a):
    """A PNG of the given size that is a chart, not a blank: many colours, and at least --min-pixels
    pixels of the run's colour (its lines)."""
    image = png_np.read_png(a.file)[:, :, :3].astype(np.int64)
    height, width = image.shape[:2]
    require((width, height) == (a.width, a.height), f"{short(a.file)}: {width}x{height}, expected {a.width}x{a.height}")
    colours = len(np.unique(image.reshape(-1, 3), axis=0))
    require(colours >= 16, f"{short(a.file)}: only {colours} distinct colours: the chart is blank")
    rgb = [int(a.color[i:i + 2], 16) for i in (0, 2, 4)]
    # Antialiased edges blend the colour into the background; the line's core keeps it within 30.
    count = int(np.sum(np.abs(image - rgb).sum(axis=2) <= 30))
    require(count >= a.min_pixels, f"{short(a.file)}: {count} pixels of the run's colour #{a.color}, expected at least "
            f"{a.min_pixels} (its line is missing)")
    print(f"{short(a.file)}: {width}x{height}, {colours} colours, {count} pixels of #{a.color}")


def runs_of(mask):
    """[(begin, end)] of the runs of True in a 1-D boolean array."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def cmd_heatmap(a):
    """An expert-load heatmap shows one panel per MoE layer of the metrics, and every cell's colour is on
    the side of the scale its load says: red above the layer's mean load, blue below (docs/TRAINING.md)."""
    _, steps = read_metrics(a.metrics)
    loads = np.array([s["expert_load"] for s in steps], dtype=np.float64)  # [steps, layers, experts]
    n_steps, n_layers, n_experts = loads.shape
    ratio = loads / loads.mean(axis=2, keepdims=True)
    image = png_np.read_png(a.file)[:, :, :3].astype(np.int64)
    # The cells are the widest run of columns holding saturated pixels (the colour bar is narrow);
    # panels are the runs of rows that are non-white across those columns.
    saturated = (image.max(axis=2) - image.min(axis=2)) > 60
    columns = max(runs_of(saturated.any(axis=0)), key=lambda r: r[1] - r[0])
    x0, x1 = columns
    filled = (image[:, x0:x1] != 255).any(axis=2).mean(axis=1) > 0.9
    panels = [(y0, y1) for y0, y1 in runs_of(filled) if y1 - y0 >= 2 * n_experts]
    require(len(panels) == n_layers, f"{short(a.file)}: {len(panels)} heatmap panels, expected one per MoE layer "
            f"({n_layers}, moe_layers {steps[0].get('moe_layers')})")
    checked = 0
    for layer, (y0, y1) in enumerate(panels):
        for step in range(n_steps):
            for expert in range(n_experts):
                x = int(x0 + (step + 0.5) * (x1 - x0) / n_steps)
                y = int(y0 + (expert + 0.5) * (y1 - y0) / n_experts)
                r, _, b = image[y, x]
                value = ratio[step, layer, expert]
                cell = f"{short(a.file)}: panel {layer}, step {step + 1}, expert {expert}: load / mean {value:.2f}"
                # Loads within 10% of the mean are drawn near white; outside it the side must be clear.
                if value > 1.1:
                    require(r > b + 10, f"{cell} but colour (r {r}, b {b}) is not red")
                elif value < 0.9:
                    require(b > r + 10, f"{cell} but colour (r {r}, b {b}) is not blue")
                else:
                    continue
                checked += 1
    require(checked >= n_steps * n_layers, f"{short(a.file)}: only {checked} cells away from the mean to check")
    print(f"{short(a.file)}: {n_layers} panels; {checked} cells red above / blue below their layer's mean load")


def cmd_summary(a):
    """summary.md's row holds the metrics file's figures: steps, tokens, final and best val loss, mean
    main loss and MaxVio over the last 10% of steps, mean MaxVio, median tokens/s."""
    _, steps = read_metrics(a.metrics)
    with open(a.file) as f:
        rows = [line for line in f if line.startswith(f"| {a.label} |")]
    require(len(rows) == 1, f"{short(a.file)}: {len(rows)} rows for run {a.label}")
    cells = [c.strip() for c in rows[0].strip().strip("|").split("|")]
    vals = [s["val_loss"] for s in steps if "val_loss" in s]
    tail = steps[len(steps) - max(1, len(steps) // 10):]
    rates = sorted(s["tokens_per_s"] for s in steps)
    expected = [a.label, str(steps[-1]["step"]), str(steps[-1]["tokens"]), f"{vals[-1]:.4f}", f"{min(vals):.4f}",
                f"{np.mean([s['main_loss'] for s in tail]):.4f}", f"{np.mean([s['max_vio'] for s in tail]):.3f}",
                f"{np.mean([s['max_vio'] for s in steps]):.3f}", f"{rates[len(rates) // 2]:.0f}"]
    require(cells == expected, f"{short(a.file)}: row {cells}, from the metrics {expected}")
    print(f"{short(a.file)}: {' | '.join(cells)} equals the metrics' figures")


# ---------------------------------------------------------------------------------------------
# Inference commands on a checkpoint
# ---------------------------------------------------------------------------------------------

def cmd_logits(a):
    """A logits file is float32 [rows, vocab], finite, and equals (within LOGITS_RTOL of its largest
    logit) the other files' rows: the same tokens another way, or a prefix of them."""
    reference = read_npy_f32(a.file, a.rows, a.vocab).astype(np.float64)
    scale = float(np.abs(reference).max())
    require(scale > 0, f"{short(a.file)}: every logit is zero")
    print(f"{short(a.file)}: float32 [{a.rows}, {a.vocab}], finite, max |logit| {scale:.4g}")
    for other in a.same:
        candidate = read_npy_f32(other)
        n = candidate.shape[0]
        require(candidate.shape[1] == a.vocab and n <= a.rows, f"{short(other)}: shape {candidate.shape}")
        diff = float(np.abs(candidate - reference[:n]).max())
        rows = f"{short(other)}: rows 0..{n - 1}"
        require(diff <= LOGITS_RTOL * scale,
                f"{rows} differ from {short(a.file)}'s by {diff:.3g} > {LOGITS_RTOL} x {scale:.4g}")
        print(f"{rows} within {diff:.2g} of {short(a.file)}'s (bound {LOGITS_RTOL * scale:.2g})")


def cmd_greedy(a):
    """dsv3 generate --temp 0 prints the prompt, then the tokens that the argmax of dsv3 logits over the
    ids tokenizer.json can decode picks one after another (decoded with tokenizer.json), up to -n or
    through EOS, and says which in its stats."""
    dsv3, model = a.dsv3, a.model
    ids = json.loads(run_dsv3([dsv3, "tokenize", "--model", model, "--bos"], a.prompt.encode())[0])
    config = read_json(os.path.join(model, "config.json"))
    eos = config["eos_token_id"]
    out, err = run_dsv3([dsv3, "generate", "--model", model, "--prompt", a.prompt, "-n", str(a.n), "--temp", "0",
                         "--precision", "f32"])
    generated, padded_argmax = [], 0
    decodable = decodable_ids(os.path.join(model, "tokenizer.json"))
    logits_path = os.path.join(a.work, "greedy.npy")
    while len(generated) < a.n and (not generated or generated[-1] != eos):
        run_dsv3([dsv3, "logits", "--model", model, "--tokens", ",".join(map(str, ids + generated)),
                  "--out", logits_path])
        row = read_npy_f32(logits_path)[-1]
        generated.append(int(decodable[np.argmax(row[decodable])]))  # the first of equal maxima, as dsv3
        padded_argmax += int(np.argmax(row)) != generated[-1]
    stopped = generated[-1] == eos
    text = decode_tokens(os.path.join(model, "tokenizer.json"), generated[:-1] if stopped else generated)
    require(out == a.prompt + text + "\n", f"generate printed {out!r}; the argmax of dsv3 logits gives "
            f"{a.prompt + text!r} (tokens {generated})")
    stats = re.search(r"generated (\d+) tokens: decode [0-9.]+ tokens/s( \(stopped at EOS\))?", err)
    require(stats is not None, f"generate's stats line is missing: {err!r}")
    require(int(stats.group(1)) == len(generated) and bool(stats.group(2)) == stopped,
            f"generate reports '{stats.group(0)}'; expected {len(generated)} tokens"
            f"{', stopped at EOS' if stopped else ''}")
    print(f"generate -n {a.n} --temp 0: {len(generated)} tokens {generated}{' through EOS' if stopped else ''}, "
          f"as the argmax of dsv3 logits over the tokenizer's {len(decodable)} ids: {text!r}"
          + (f" (over all ids, {padded_argmax} steps would pick one the tokenizer lacks)" if padded_argmax else ""))


def human_count(text):
    """info's numbers ("136.14K", "980") -> (value, half of the last printed digit's unit)."""
    match = re.fullmatch(r"([0-9.]+)([KMBT]?)", text)
    require(match is not None, f"unreadable count {text!r}")
    unit = 1000.0 ** " KMBT".index(match.group(2) or " ")
    decimals = len(match.group(1).split(".")[1]) if "." in match.group(1) else 0
    return float(match.group(1)) * unit, 0.5 * unit * 10.0 ** -decimals


def cmd_info(a):
    """dsv3 info on a checkpoint: its parameter counts, weight memory and KV cache bytes equal those counted from the
    checkpoint's own tensors and config.json, to the printed precision."""
    config = read_json(os.path.join(a.model, "config.json"))
    checkpoint = ModelTensors(a.model)
    layers = config["num_hidden_layers"]
    main = mtp = embedding = routed = stored_bytes = 0
    for name in checkpoint.names():
        n = int(np.prod(checkpoint.shape(name)))
        stored_bytes += checkpoint.raw(name).nbytes
        layer = re.match(r"model\.layers\.(\d+)\.", name)
        if layer and int(layer.group(1)) >= layers:
            mtp += n
            continue
        main += n
        embedding += n if name == "model.embed_tokens.weight" else 0
        routed += n if ".mlp.experts." in name else 0
    active = main - embedding - routed + round(routed * config["num_experts_per_tok"] / config["n_routed_experts"])
    text = run_dsv3([a.dsv3, "info", "--model", a.model])[0]
    counts = re.search(r"parameters\s+(\S+) total \((\S+) main \+ (\S+) MTP\), (\S+) active per token", text)
    require(counts is not None, f"no parameters line in {text!r}")
    for label, printed, value in zip(("total", "main", "MTP", "active"), counts.groups(),
                                     (main + mtp, main, mtp, active)):
        shown, half_unit = human_count(printed)
        require(abs(shown - value) <= half_unit, f"info prints {label} parameters {printed}; the checkpoint's "
                f"tensors count {value}")
    memory = re.search(r"weight memory\s+([0-9.]+) (B|KiB|MiB|GiB)", text)
    require(memory is not None, f"no weight memory line in {text!r}")
    unit = 1024.0 ** ["B", "KiB", "MiB", "GiB"].index(memory.group(2))
    require(abs(float(memory.group(1)) * unit - stored_bytes) <= 0.005 * unit,  # printed with %.2f
            f"info prints {memory.group(0)}; the tensors hold {stored_bytes} bytes")
    kv = (config["kv_lora_rank"] + config["qk_rope_head_dim"]) * layers * 2  # BF16: 2 bytes a value
    require(f"KV cache         {kv} bytes/token in BF16" in text, f"info's KV cache line differs from {kv} bytes/token")
    require(f"vocab            {config['vocab_size']}\n" in text, "info's vocab differs from config.json's")
    print(f"info: {main + mtp} parameters ({main} main + {mtp} MTP), {active} active, {stored_bytes} bytes, "
          f"KV {kv} bytes/token: as counted from the checkpoint")


def parse_perplexity(text):
    match = re.search(r"cross-entropy ([0-9.]+)  perplexity ([0-9.]+)  \((\d+) windows x (\d+) tokens", text)
    require(match is not None, f"no cross-entropy/perplexity line in {text!r}")
    ce, ppl = float(match.group(1)), float(match.group(2))
    require(math.isfinite(ce) and math.isfinite(ppl), f"non-finite cross-entropy {ce} or perplexity {ppl}")
    # Printed as %.6f and %.4f: exp(ce) carries ce's rounding (5e-7 relative) plus ppl's own 5e-5.
    require(abs(math.exp(ce) - ppl) <= 5e-7 * ppl + 5e-5 + 1e-12, f"perplexity {ppl} is not exp({ce}) = {math.exp(ce)}")
    return ce, ppl, int(match.group(3)), int(match.group(4))


def cmd_perplexity(a):
    """dsv3 perplexity on a checkpoint: exp of its cross-entropy, below the vocabulary size, over every
    window of the val split by default; on --windows windows its cross-entropy equals the one computed
    here from dsv3 logits of the same windows, and the trainer's val_loss (--val-loss-from) on the same
    windows; an FP8 copy's (--fp8-model) is within the FP8 rounding bound."""
    manifest = read_json(os.path.join(a.shards, "manifest.json"))
    vocab = read_json(os.path.join(a.model, "config.json"))["vocab_size"]
    base = [a.dsv3, "perplexity", "--model", a.model, "--data", a.shards, "--seq-len", str(a.seq_len), "--quiet"]
    ce_all, ppl_all, windows_all, _ = parse_perplexity(run_dsv3(base)[0])
    expected_windows = (manifest["splits"]["val"]["tokens"] - 1) // a.seq_len
    require(windows_all == expected_windows, f"perplexity used {windows_all} windows of the val split; "
            f"(tokens - 1) / seq-len = {expected_windows}")
    require(ppl_all < vocab, f"perplexity {ppl_all} of a trained model is not below the vocabulary size {vocab}")
    print(f"all {windows_all} val windows: cross-entropy {ce_all}, perplexity {ppl_all} = exp(ce) < vocab {vocab}")

    ce, _, windows, _ = parse_perplexity(run_dsv3(base + ["--windows", str(a.windows), "--precision", "f32"])[0])
    require(windows == a.windows, f"--windows {a.windows} evaluated {windows}")
    val = np.fromfile(os.path.join(a.shards, manifest["splits"]["val"]["file"]), dtype=manifest["dtype"])
    losses, scale = [], 0.0
    logits_path = os.path.join(a.work, "window.npy")
    for w in range(a.windows):
        tokens = val[w * a.seq_len:(w + 1) * a.seq_len + 1].astype(np.int64)
        run_dsv3([a.dsv3, "logits", "--model", a.model, "--tokens", ",".join(map(str, tokens[:-1])),
                  "--out", logits_path])
        logits = read_npy_f32(logits_path, a.seq_len, vocab).astype(np.float64)
        top = logits.max(axis=1)
        lse = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
        losses.extend(lse - logits[np.arange(a.seq_len), tokens[1:]])
        scale = max(scale, float(np.abs(logits).max()))
    own = float(np.mean(losses))
    # Cross-entropy moves by at most twice the largest logit change (log-sum-exp and the target logit
    # each move by at most max |change|): 2 * LOGITS_RTOL * max |logit|, plus %.6f printing.
    tol = 2 * LOGITS_RTOL * scale + 5e-7
    require(abs(ce - own) <= tol, f"perplexity --precision f32 gives cross-entropy {ce}; dsv3 logits of the same "
            f"{a.windows} windows give {own} (|diff| {abs(ce - own):.3g} > {tol:.3g})")
    print(f"{a.windows} windows x {a.seq_len}: cross-entropy {ce} (f32), from dsv3 logits {own:.6f}, bound {tol:.2g}")

    if a.val_loss_from:
        _, steps = read_metrics(a.val_loss_from)
        val_loss = [s["val_loss"] for s in steps if "val_loss" in s][-1]
        # The trainer evaluates with BF16 GEMM operands (2^-9 relative rounding each, two per product):
        # logits within 2 * 2^-9 of max |logit|, cross-entropy within twice that.
        tol = 4 * 2.0 ** -9 * scale + 5e-7
        require(abs(val_loss - ce) <= tol, f"the trainer's last val_loss {val_loss} differs from perplexity's "
                f"{ce} on the same windows by {abs(val_loss - ce):.3g} > {tol:.3g}")
        print(f"the trainer's val_loss {val_loss:.6f} on the same windows: within {tol:.2g}")
    if a.fp8_model:
        fp8_base = [a.dsv3, "perplexity", "--model", a.fp8_model, "--data", a.shards, "--seq-len", str(a.seq_len),
                    "--windows", str(a.windows), "--quiet", "--precision"]
        ce_fp8 = parse_perplexity(run_dsv3(fp8_base + ["fp8"])[0])[0]
        # E4M3 weights and per-tile activations (2^-4 relative rounding each): logits within 2 * 2^-4 of
        # max |logit|, cross-entropy within twice that.
        tol = 4 * 2.0 ** -4 * scale
        require(abs(ce_fp8 - ce) <= tol, f"FP8 checkpoint's cross-entropy {ce_fp8} vs {ce}: |diff| "
                f"{abs(ce_fp8 - ce):.3g} > {tol:.3g}")
        print(f"FP8 weights and activations: cross-entropy {ce_fp8}, |diff| {abs(ce_fp8 - ce):.2g} <= {tol:.2g} "
              f"({tol / ce:.1%} of it)")


def is_linear(name):
    """The projections DeepSeek stores in FP8: attention, MLP and expert projections, MTP's eh_proj."""
    return name.endswith(".weight") and "_proj" in name


def cmd_quantized(a):
    """A quantize --fp8 output holds every projection of the source as F8_E4M3 with an F32
    weight_scale_inv of shape ceil(rows/128) x ceil(cols/128) whose dequantized values are within E4M3's
    rounding of the source; every other tensor unchanged; DeepSeek's quantization_config."""
    source, out = ModelTensors(a.source), ModelTensors(a.out)
    config = read_json(os.path.join(a.out, "config.json"))
    expected_config = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                       "weight_block_size": [128, 128]}
    require(config.get("quantization_config") == expected_config,
            f"{short(a.out)}/config.json: quantization_config {config.get('quantization_config')}")
    names = set(source.names())
    scales = {n for n in out.names() if n.endswith(".weight_scale_inv")}
    require(set(out.names()) - scales == names, f"tensor names differ: {sorted(set(out.names()) ^ names)[:5]}")
    quantized = 0
    for name in sorted(names):
        shape = source.shape(name)
        if not is_linear(name):
            require(out.dtype(name) == source.dtype(name) and np.array_equal(out.raw(name), source.raw(name)),
                    f"{name}: changed by quantize")
            continue
        require(out.dtype(name) == "F8_E4M3" and out.shape(name) == shape, f"{name}: {out.dtype(name)} "
                f"{out.shape(name)}, expected F8_E4M3 {shape}")
        scale_name = name + "_scale_inv"
        scale_shape = [-(-shape[0] // 128), -(-shape[1] // 128)]
        require(scale_name in scales and out.dtype(scale_name) == "F32" and out.shape(scale_name) == scale_shape,
                f"{scale_name}: missing or not F32 {scale_shape}")
        weight = source.float64(name)
        values = st.decode(out.raw(name), "F8_E4M3").astype(np.float64)
        scale = st.expand_block_scales(st.decode(out.raw(scale_name), "F32").astype(np.float64), shape)
        # E4M3 rounds to 3 mantissa bits (2^-4 relative) down to its subnormal spacing 2^-9 (times the scale).
        err = np.abs(values * scale - weight) - (2.0 ** -4 * np.abs(weight) + 2.0 ** -9 * scale)
        require(err.max() <= 1e-12, f"{name}: dequantized weight off the source by more than E4M3 rounding")
        quantized += 1
        scales.discard(scale_name)
    require(quantized > 0 and not scales, f"{quantized} projections quantized; scales without a weight: {scales}")
    print(f"{short(a.out)}: {quantized} projections F8_E4M3 with F32 block scales within E4M3 rounding of the source, "
          f"{len(names) - quantized} tensors unchanged, DeepSeek's quantization_config")


# ---------------------------------------------------------------------------------------------
# Chat, help
# ---------------------------------------------------------------------------------------------

def split_reply(reply, starts_in_reasoning):
    """A reply split as DeepSeek's API splits it, (reasoning, content), written apart from dsv3's splitter:
    a leading <think> opens the reasoning (R1's prompt has already opened it), the first </think> ends it,
    and the newlines at the tags are dropped."""
    if reply.startswith("<think>"):
        reply, starts_in_reasoning = reply[len("<think>"):], True
    if not starts_in_reasoning:
        return "", reply
    reasoning, tag, content = reply.partition("</think>")
    return (reasoning.strip("\n"), content.lstrip("\n")) if tag else (reasoning.lstrip("\n"), "")


def shown_reply(reasoning, content):
    """How dsv3 prints a reply when stdout is not a terminal: the reasoning between a <think> line and a
    </think> line, a blank line, the content."""
    if not reasoning:
        return content
    return "<think>\n" + reasoning + ("\n</think>\n\n" + content if content else "")


def content_of_shown(shown):
    """The content of a reply as shown_reply prints it (what dsv3 chat keeps in the conversation)."""
    return shown.partition("\n</think>\n\n")[2] if shown.startswith("<think>\n") else shown


def cmd_chat(a):
    """A dsv3 chat session fed the --user messages keeps its latent cache across turns: turn 1 prefills
    the whole conversation; every later turn reuses at least the whole previous conversation (but for the
    --dropped-tail tokens of a generation prompt the history does not repeat: R1's <think>\n) and at most
    what the cache holds (that plus the reply's tokens but the last), and prefills only the rest; each
    turn's greedy reply equals dsv3 generate --messages on the conversation so far, with the replies'
    content only, in a fresh cache."""
    flags = ["-n", str(a.n), "--temp", "0", "--precision", a.precision]
    out, err = run_dsv3([a.dsv3, "chat", "--model", a.model] + flags, "".join(u + "\n" for u in a.user + [""]).encode())
    require(out.startswith("\n> ") and out.endswith("\n\n> "),
            f"chat's stdout is not '> ' prompts and replies: {out!r}")
    replies = out[3:-4].split("\n\n> ")
    require(len(replies) == len(a.user), f"chat printed {len(replies)} replies for {len(a.user)} messages: {out!r}")
    turns = [tuple(int(x) for x in m) for m in
             re.findall(r"conversation (\d+) tokens: (\d+) reused from the cache, (\d+) prefilled", err)]
    generated = [int(x) for x in re.findall(r"generated (\d+) tokens", err)]
    require(len(turns) == len(a.user) == len(generated), f"chat's stderr reports {len(turns)} turns: {err!r}")
    messages, previous = [], None
    for k, (user, reply) in enumerate(zip(a.user, replies)):
        messages.append({"role": "user", "content": user})
        path = os.path.join(a.work, f"turn{k + 1}.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(messages, f, ensure_ascii=False)
        fresh, fresh_err = run_dsv3([a.dsv3, "generate", "--model", a.model, "--messages", path] + flags)
        length = int(re.search(r"prompt (\d+) tokens", fresh_err).group(1))
        size, reused, prefilled = turns[k]
        require(size == length,
                f"turn {k + 1}: chat's conversation has {size} tokens, generate --messages renders {length}")
        require(reused + prefilled == size, f"turn {k + 1}: {reused} reused + {prefilled} prefilled != {size}")
        if previous is None:
            require(reused == 0, f"turn 1 reused {reused} tokens from an empty cache")
        else:
            held = previous + generated[k - 1] - 1  # the last reply token is never fed back
            require(previous - a.dropped_tail <= reused <= held, f"turn {k + 1} reused {reused} tokens; the previous conversation "
                    f"({previous} tokens) must all come from the cache, and it holds {held}")
        require(fresh == reply + "\n", f"turn {k + 1}: chat replied {reply!r}; generate --messages from a fresh "
                f"cache replies {fresh[:-1]!r}")
        print(f"turn {k + 1}: conversation {size} tokens, {reused} reused, {prefilled} prefilled; reply {reply!r} "
              f"equals a fresh generate --messages")
        messages.append({"role": "assistant", "content": content_of_shown(reply)})
        previous = size


def cmd_reasoning(a):
    """dsv3 generate --chat picks --expect as the model's chat template when none is given, and says so;
    with --chat-template deepseek-r1 the prompt is deepseek-v3's plus the tokens of "<think>\n"; the reply
    printed with --reasoning-format deepseek is the --reasoning-format none reply split as DeepSeek's API
    splits it (split_reply, for either template) and shown as shown_reply prints it."""
    base = [a.dsv3, "generate", "--model", a.model, "--chat", "--prompt", a.prompt, "-n", str(a.n), "--temp", "0",
            "--ignore-eos"]

    def prompt_tokens(err):
        return int(re.search(r"prompt (\d+) tokens", err).group(1))

    err = run_dsv3(base)[1]
    detected = f"chat template {a.expect} (detected from tokenizer_config.json)"
    require(detected in err, f"generate --chat does not say '{detected}': {err!r}")
    print(f"generate --chat: {detected}")
    think = json.loads(run_dsv3([a.dsv3, "tokenize", "--model", a.model], b"<think>\n")[0])
    lengths = {}
    for template in ("deepseek-v3", "deepseek-r1"):
        raw, err = run_dsv3(base + ["--chat-template", template, "--reasoning-format", "none"])
        shown, shown_err = run_dsv3(base + ["--chat-template", template])
        lengths[template] = prompt_tokens(err)
        require(prompt_tokens(shown_err) == lengths[template], f"{template}: the prompt length depends on the format")
        require(raw.endswith("\n") and shown.endswith("\n"), f"{template}: replies do not end in a newline")
        expected = shown_reply(*split_reply(raw[:-1], template == "deepseek-r1")) + "\n"
        require(shown == expected, f"{template}: generate printed {shown!r}; the reply {raw!r} split and shown "
                f"is {expected!r}")
        print(f"{template}: prompt {lengths[template]} tokens; reply {raw[:-1]!r} shown as {shown[:-1]!r}")
    require(lengths["deepseek-r1"] == lengths["deepseek-v3"] + len(think),
            f"the R1 prompt has {lengths['deepseek-r1']} tokens, V3's {lengths['deepseek-v3']}, and <think>\\n "
            f"is {think}")
    print(f"the R1 prompt is V3's plus <think>\\n's {len(think)} tokens {think}")


def readme_options(readme):
    """{subcommand: [options]} from the README's command table (`dsv3 SUB ...` in the first column)."""
    options = {}
    with open(readme, encoding="utf-8") as f:
        for line in f:
            match = re.match(r"\| `dsv3 ([a-z-]+) (.*?)` \|", line)
            if match:
                options[match.group(1)] = re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", match.group(2))
    return options


def help_options(text):
    """The options a CLI11 --help lists: the names at the start of its option lines ("  -n,--max-new-tokens")."""
    names = set()
    for match in re.finditer(r"^  (-[^\s]+)", text, re.MULTILINE):
        names.update(match.group(1).split(","))
    return names


def cmd_help(a):
    """dsv3 --help lists the README command table's subcommands and --threads, and each subcommand's
    --help lists every option the table shows for it."""
    documented = readme_options(a.readme)
    top = run_dsv3([a.dsv3, "--help"])[0]
    subcommands = re.findall(r"^  ([a-z-]+) ", top.split("Subcommands:")[-1], re.MULTILINE)
    require(sorted(subcommands) == sorted(documented), f"dsv3 --help lists subcommands {sorted(subcommands)}; "
            f"{short(a.readme)}'s table documents {sorted(documented)}")
    require("--threads" in help_options(top), "dsv3 --help does not list --threads, which README.md documents")
    print(f"dsv3 --help lists --threads and the {len(subcommands)} subcommands of README.md's table")
    for sub, options in documented.items():
        listed = help_options(run_dsv3([a.dsv3, sub, "--help"])[0])
        missing = [o for o in options if o not in listed]
        require(not missing, f"dsv3 {sub} --help does not list {missing}, which README.md documents")
        print(f"dsv3 {sub} --help lists {' '.join(options)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, function):
        p = sub.add_parser(name, help=function.__doc__.split("\n")[0])
        p.set_defaults(function=function)
        return p

    p = add("metrics", cmd_metrics)
    p.add_argument("file")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--state")
    p.add_argument("--same-losses-as")
    p.add_argument("--kept")
    p = add("fp8-train", cmd_fp8_train)
    p.add_argument("fp8")
    p.add_argument("bf16")
    p = add("png", cmd_png)
    p.add_argument("file")
    p.add_argument("--width", type=int, required=True)
    p.add_argument("--height", type=int, required=True)
    p.add_argument("--color", required=True, help="the run's colour, hex RRGGBB")
    p.add_argument("--min-pixels", type=int, required=True)
    p = add("heatmap", cmd_heatmap)
    p.add_argument("file")
    p.add_argument("metrics")
    p = add("summary", cmd_summary)
    p.add_argument("file")
    p.add_argument("metrics")
    p.add_argument("--label", required=True)
    p = add("logits", cmd_logits)
    p.add_argument("file")
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--vocab", type=int, required=True)
    p.add_argument("--same", nargs="*", default=[])
    for name, function in (("greedy", cmd_greedy), ("perplexity", cmd_perplexity), ("chat", cmd_chat),
                           ("help", cmd_help), ("info", cmd_info), ("quantized", cmd_quantized),
                           ("reasoning", cmd_reasoning)):
        p = add(name, function)
        if name in ("greedy", "perplexity", "chat", "help", "info", "reasoning"):
            p.add_argument("--dsv3", required=True)
        if name in ("greedy", "perplexity", "chat"):
            p.add_argument("--work", required=True, help="a directory for scratch files")
        if name in ("greedy", "perplexity", "chat", "info", "reasoning"):
            p.add_argument("--model", required=True)
    p = sub.choices["greedy"]
    p.add_argument("--prompt", required=True)
    p.add_argument("-n", type=int, required=True)
    p = sub.choices["perplexity"]
    p.add_argument("--shards", required=True)
    p.add_argument("--seq-len", type=int, required=True)
    p.add_argument("--windows", type=int, required=True)
    p.add_argument("--val-loss-from")
    p.add_argument("--fp8-model")
    p = sub.choices["chat"]
    p.add_argument("--user", action="append", required=True, help="each message typed, in order")
    p.add_argument("-n", type=int, required=True)
    p.add_argument("--precision", required=True)
    p.add_argument("--dropped-tail", type=int, default=0,
                   help="generation-prompt tokens the next turn's history does not repeat (R1's <think>\\n)")
    p = sub.choices["reasoning"]
    p.add_argument("--prompt", required=True)
    p.add_argument("-n", type=int, required=True)
    p.add_argument("--expect", required=True, choices=["deepseek-v3", "deepseek-r1"],
                   help="the template generate --chat must detect")
    sub.choices["help"].add_argument("--readme", required=True)
    p = sub.choices["quantized"]
    p.add_argument("--source", required=True)
    p.add_argument("--out", required=True)

    args = parser.parse_args()
    try:
        args.function(args)
    except (CheckFailed, png_np.PngError, st.SafetensorsError) as e:
        print(f"FAIL: {e}")
        return 1
    except (OSError, ValueError, KeyError) as e:  # a missing file, unreadable JSON, a field not written
        print(f"FAIL: {type(e).__name__}: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
