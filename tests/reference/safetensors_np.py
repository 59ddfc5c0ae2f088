"""A small safetensors reader and writer in NumPy, independent of the C++ engine.

Decodes BF16, F16, F32, F64, F8_E4M3 (OCP "fn": no infinities, 0x7F/0xFF are NaN), F8_E5M2 and the
integer types; dequantizes DeepSeek's block-scaled FP8 weights (SPEC.md section 1: value times the
`weight_scale_inv` entry of its 128x128 block, edge blocks partial); encodes BF16 (round to nearest
even) and E4M3 (nearest, ties to even, saturating at 448) so that test checkpoints can be written.

File layout (safetensors): 8-byte little-endian header length N, N bytes of JSON
{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, then the data;
offsets are relative to the end of the header.

Only numpy and the standard library are used. Importing this module from an interpreter without
numpy re-executes the running script with /usr/bin/python3 (Debian's python3-numpy) when that has it.
"""

import json
import os
import struct
import sys


def _reexec_with_numpy_interpreter():
    # The default python3 on some machines (pyenv) lacks numpy; Debian's /usr/bin/python3 has it.
    if os.environ.get("DSV3_PY_REEXEC") == "1":
        return
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.realpath(candidate) == os.path.realpath(sys.executable) or not os.access(candidate, os.X_OK):
            continue
        os.environ["DSV3_PY_REEXEC"] = "1"
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(candidate, [candidate] + sys.argv)


try:
    import numpy as np
except ImportError:  # pragma: no cover - depends on the machine
    if sys.argv and sys.argv[0] and os.path.isfile(sys.argv[0]):
        _reexec_with_numpy_interpreter()
    sys.stderr.write("[safetensors_np] numpy is required: install python3-numpy (apt) and run with /usr/bin/python3\n")
    raise


class SafetensorsError(Exception):
    pass


# Storage dtype name -> numpy dtype used to hold the raw bytes.
_RAW_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "F8_E4M3": np.dtype("u1"),
    "F8_E5M2": np.dtype("u1"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("u1"),
}


# ---------------------------------------------------------------------------------------------
# Element decoders and encoders
# ---------------------------------------------------------------------------------------------

def bf16_to_float32(raw):
    """uint16 bit patterns -> float32 (BF16 is the upper half of an IEEE float32)."""
    return (np.asarray(raw, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def float_to_bf16_bits(values):
    """float -> BF16 bit patterns (uint16), round to nearest, ties to even; NaN stays NaN."""
    f32 = np.ascontiguousarray(np.asarray(values, dtype=np.float32))
    bits = f32.view(np.uint32).astype(np.uint64)
    rounded = (bits + np.uint64(0x7FFF) + ((bits >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16)
    out = rounded.astype(np.uint16)
    nan = np.isnan(f32)
    out[nan] = np.uint16(0x7FC0)
    return out


def round_to_bf16(values):
    """float64 values rounded to the nearest BF16 value, returned as float64."""
    return bf16_to_float32(float_to_bf16_bits(values)).astype(np.float64)


def _e4m3_value(code):
    # E4M3 "fn": 1 sign bit, 4 exponent bits (bias 7), 3 mantissa bits; no infinities;
    # exponent 15 with mantissa 7 (0x7F, 0xFF) is NaN, so the largest finite value is 1.75 * 2^8 = 448.
    sign = -1.0 if code & 0x80 else 1.0
    exponent = (code >> 3) & 0xF
    mantissa = code & 0x7
    if exponent == 0xF and mantissa == 0x7:
        return float("nan")
    if exponent == 0:  # subnormal: mantissa/8 * 2^(1-7)
        return sign * (mantissa / 8.0) * 2.0 ** -6
    return sign * (1.0 + mantissa / 8.0) * 2.0 ** (exponent - 7)


def _e5m2_value(code):
    # E5M2: 1 sign, 5 exponent bits (bias 15), 2 mantissa bits, IEEE-like infinities and NaNs.
    sign = -1.0 if code & 0x80 else 1.0
    exponent = (code >> 2) & 0x1F
    mantissa = code & 0x3
    if exponent == 0x1F:
        return sign * float("inf") if mantissa == 0 else float("nan")
    if exponent == 0:
        return sign * (mantissa / 4.0) * 2.0 ** -14
    return sign * (1.0 + mantissa / 4.0) * 2.0 ** (exponent - 15)


E4M3_TABLE = np.array([_e4m3_value(c) for c in range(256)], dtype=np.float64)
E5M2_TABLE = np.array([_e5m2_value(c) for c in range(256)], dtype=np.float64)
E4M3_MAX = 448.0

# Non-negative finite E4M3 codes 0x00..0x7E are increasing in value; used by the encoder.
_E4M3_POSITIVE = E4M3_TABLE[:0x7F]


def float_to_e4m3_bits(values):
    """float -> E4M3 codes (uint8): nearest value, ties to the even code, saturating at +-448.

    NaN inputs map to 0x7F. Used to write test checkpoints (DeepSeek quantizes weights so that each
    128x128 block's amax maps to 448, so saturation never triggers there).
    """
    x = np.asarray(values, dtype=np.float64)
    magnitude = np.minimum(np.abs(x), E4M3_MAX)
    upper = np.searchsorted(_E4M3_POSITIVE, magnitude, side="left")  # first code with value >= magnitude
    upper = np.clip(upper, 0, 0x7E)
    lower = np.clip(upper - 1, 0, 0x7E)
    up_gap = _E4M3_POSITIVE[upper] - magnitude
    low_gap = magnitude - _E4M3_POSITIVE[lower]
    choose_lower = (low_gap < up_gap) | ((low_gap == up_gap) & (lower % 2 == 0) & (lower != upper))
    code = np.where(choose_lower, lower, upper).astype(np.uint8)
    code = np.where(np.signbit(x) & (code != 0), code | np.uint8(0x80), code).astype(np.uint8)
    code[np.isnan(x)] = np.uint8(0x7F)
    return code


def decode(raw, dtype):
    """Raw stored array of safetensors dtype `dtype` -> float64 array (integers converted as is)."""
    if dtype == "BF16":
        return bf16_to_float32(raw).astype(np.float64)
    if dtype == "F8_E4M3":
        return E4M3_TABLE[np.asarray(raw, dtype=np.uint8)]
    if dtype == "F8_E5M2":
        return E5M2_TABLE[np.asarray(raw, dtype=np.uint8)]
    if dtype in _RAW_DTYPES:
        return np.asarray(raw).astype(np.float64)
    raise SafetensorsError(f"[safetensors] cannot decode dtype {dtype}")


# ---------------------------------------------------------------------------------------------
# Block-scaled FP8 (SPEC.md section 1)
# ---------------------------------------------------------------------------------------------

def expand_block_scales(scale, shape, block=(128, 128)):
    """[ceil(rows/br), ceil(cols/bc)] scales -> [rows, cols]: each element gets its block's scale."""
    rows, cols = shape
    br, bc = block
    want = (-(-rows // br), -(-cols // bc))
    if tuple(scale.shape) != want:
        raise SafetensorsError(
            f"[fp8] scale shape {tuple(scale.shape)} does not match weight {tuple(shape)} with blocks {block}: "
            f"expected {want}")
    return np.repeat(np.repeat(scale, br, axis=0)[:rows], bc, axis=1)[:, :cols]


def dequantize_blocks(values, scale, block=(128, 128)):
    """Decoded FP8 values [rows, cols] times the scale of their block (edge blocks partial)."""
    values = np.asarray(values, dtype=np.float64)
    return values * expand_block_scales(np.asarray(scale, dtype=np.float64), values.shape, block)


def quantize_blocks(weight, block=(128, 128), power_of_two_scales=False):
    """float [rows, cols] -> (E4M3 codes uint8 [rows, cols], float32 scales [ceil(r/br), ceil(c/bc)]).

    scale = amax(block) / 448 (rounded up to a power of two when `power_of_two_scales`, as the
    "ue8m0" scale format of DeepSeek-V3.1 does); code = e4m3(w / scale). All-zero blocks get scale 1.
    """
    w = np.asarray(weight, dtype=np.float64)
    rows, cols = w.shape
    br, bc = block
    n_r, n_c = -(-rows // br), -(-cols // bc)
    scale = np.ones((n_r, n_c), dtype=np.float32)
    codes = np.zeros((rows, cols), dtype=np.uint8)
    for i in range(n_r):
        for j in range(n_c):
            tile = w[i * br:(i + 1) * br, j * bc:(j + 1) * bc]
            amax = float(np.max(np.abs(tile))) if tile.size else 0.0
            s = amax / E4M3_MAX if amax > 0 else 1.0
            if power_of_two_scales:
                s = 2.0 ** np.ceil(np.log2(s))
            s = float(np.float32(s))
            scale[i, j] = s
            codes[i * br:(i + 1) * br, j * bc:(j + 1) * bc] = float_to_e4m3_bits(tile / s)
    return codes, scale


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------

class SafetensorsFile:
    """One .safetensors file; tensors are memory-mapped on demand."""

    def __init__(self, path):
        self.path = path
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) != 8:
                raise SafetensorsError(f"[safetensors] {path}: file shorter than the 8-byte header length")
            (header_len,) = struct.unpack("<Q", head)
            if header_len > size - 8:
                raise SafetensorsError(f"[safetensors] {path}: header length {header_len} exceeds file size {size}")
            try:
                header = json.loads(f.read(header_len).decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise SafetensorsError(f"[safetensors] {path}: header is not valid JSON: {e}") from e
        self.data_start = 8 + header_len
        self.metadata = header.pop("__metadata__", {}) or {}
        self.entries = {}
        for name, info in header.items():
            dtype = info.get("dtype")
            shape = [int(d) for d in info.get("shape", [])]
            begin, end = (int(v) for v in info.get("data_offsets", [0, 0]))
            if dtype not in _RAW_DTYPES:
                raise SafetensorsError(f"[safetensors] {path}: tensor {name} has unsupported dtype {dtype}")
            count = int(np.prod(shape, dtype=np.int64)) if shape else 1
            if end - begin != count * _RAW_DTYPES[dtype].itemsize or end < begin:
                raise SafetensorsError(
                    f"[safetensors] {path}: tensor {name} byte range [{begin}, {end}) does not hold {dtype} {shape}")
            if self.data_start + end > size:
                raise SafetensorsError(f"[safetensors] {path}: tensor {name} extends past the end of the file")
            self.entries[name] = (dtype, shape, begin)

    def names(self):
        return list(self.entries)

    def dtype(self, name):
        return self.entries[name][0]

    def shape(self, name):
        return list(self.entries[name][1])

    def raw(self, name):
        """The stored array (BF16 as uint16, FP8 as uint8), read-only memory map."""
        dtype, shape, begin = self.entries[name]
        np_dtype = _RAW_DTYPES[dtype]
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if count == 0:
            return np.zeros(shape, dtype=np_dtype)
        arr = np.memmap(self.path, dtype=np_dtype, mode="r", offset=self.data_start + begin, shape=(count,))
        return arr.reshape(shape)


class Checkpoint:
    """A Hugging Face checkpoint directory: model.safetensors.index.json (sharded) or *.safetensors."""

    def __init__(self, directory, block=(128, 128)):
        self.directory = directory
        self.block = tuple(block)
        self.files = {}
        self.location = {}  # tensor name -> file name
        index_path = os.path.join(directory, "model.safetensors.index.json")
        if os.path.exists(index_path):
            with open(index_path) as f:
                weight_map = json.load(f).get("weight_map", {})
            for name, file_name in weight_map.items():
                self.location[name] = file_name
            for file_name in sorted(set(weight_map.values())):
                self._open(file_name)
            for name, file_name in weight_map.items():
                if name not in self.files[file_name].entries:
                    raise SafetensorsError(
                        f"[safetensors] {index_path}: weight_map puts {name} in {file_name}, which lacks it")
        else:
            names = sorted(n for n in os.listdir(directory) if n.endswith(".safetensors"))
            if not names:
                raise SafetensorsError(f"[safetensors] {directory}: no *.safetensors files and no index")
            for file_name in names:
                st = self._open(file_name)
                for name in st.names():
                    if name in self.location:
                        raise SafetensorsError(f"[safetensors] {directory}: tensor {name} appears in two files")
                    self.location[name] = file_name

    def _open(self, file_name):
        if file_name not in self.files:
            self.files[file_name] = SafetensorsFile(os.path.join(self.directory, file_name))
        return self.files[file_name]

    def names(self):
        return list(self.location)

    def has(self, name):
        return name in self.location

    def _file(self, name):
        if name not in self.location:
            raise SafetensorsError(f"[safetensors] {self.directory}: tensor {name} not found")
        return self.files[self.location[name]]

    def dtype(self, name):
        return self._file(name).dtype(name)

    def shape(self, name):
        return self._file(name).shape(name)

    def raw(self, name):
        return self._file(name).raw(name)

    def float64(self, name, expect_shape=None):
        """Tensor as float64; FP8 weights are dequantized with their `weight_scale_inv` blocks."""
        dtype = self.dtype(name)
        values = decode(self.raw(name), dtype)
        if dtype in ("F8_E4M3", "F8_E5M2"):
            scale_name = name[:-len("weight")] + "weight_scale_inv" if name.endswith("weight") else None
            if scale_name is None or not self.has(scale_name):
                raise SafetensorsError(f"[fp8] {name} is {dtype} but has no companion {scale_name}")
            if values.ndim != 2:
                raise SafetensorsError(f"[fp8] {name}: block scaling needs a 2-D weight, got {values.shape}")
            values = dequantize_blocks(values, self.float64(scale_name), self.block)
        if expect_shape is not None and list(values.shape) != list(expect_shape):
            raise SafetensorsError(
                f"[safetensors] {name}: shape {list(values.shape)} but the config implies {list(expect_shape)}")
        return values


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------

def write_safetensors(path, tensors, metadata=None):
    """tensors: ordered {name: (dtype, array)} with arrays already in storage form
    (BF16 as uint16 bits, F8 as uint8 codes). Header padded with spaces to a multiple of 8."""
    header = {}
    offset = 0
    blobs = []
    for name, (dtype, array) in tensors.items():
        if dtype not in _RAW_DTYPES:
            raise SafetensorsError(f"[safetensors] cannot write dtype {dtype} for {name}")
        data = np.ascontiguousarray(np.asarray(array).astype(_RAW_DTYPES[dtype], copy=False)).tobytes()
        header[name] = {"dtype": dtype, "shape": list(np.shape(array)), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    return offset
