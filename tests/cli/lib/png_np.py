"""A small PNG reader in NumPy for the CLI tests: 8-bit RGB or RGBA, not interlaced (what cairo writes).

    read_png(path) -> uint8 array [height, width, channels]

Checks the signature, the chunk CRCs and IHDR, and undoes the five row filters of the PNG
specification (section 9: None, Sub, Up, Average, Paeth). Raises PngError saying what is wrong.
"""

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"


class PngError(Exception):
    pass


def _chunks(data, path):
    pos = len(SIGNATURE)
    while pos < len(data):
        if pos + 12 > len(data):
            raise PngError(f"{path}: truncated chunk at byte {pos}")
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        if len(body) != length or zlib.crc32(kind + body) != crc:
            raise PngError(f"{path}: chunk {kind!r} at byte {pos} is truncated or fails its CRC")
        yield kind, body
        pos += 12 + length


def _paeth_row(line, prior, bpp):
    """Paeth-filtered bytes -> raw bytes (in place on a bytearray); sequential along the row."""
    for i in range(len(line)):
        a = line[i - bpp] if i >= bpp else 0
        b = prior[i]
        c = prior[i - bpp] if i >= bpp else 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        predictor = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        line[i] = (line[i] + predictor) & 0xFF


def _average_row(line, prior, bpp):
    for i in range(len(line)):
        a = line[i - bpp] if i >= bpp else 0
        line[i] = (line[i] + ((a + prior[i]) >> 1)) & 0xFF


def read_png(path):
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(SIGNATURE):
        raise PngError(f"{path}: not a PNG file (signature {data[:8]!r})")
    header, idat, ended = None, b"", False
    for kind, body in _chunks(data, path):
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            ended = True
    if header is None or not ended:
        raise PngError(f"{path}: no IHDR or no IEND chunk")
    width, height, depth, color_type, _, _, interlace = header
    if depth != 8 or color_type not in (2, 6) or interlace != 0:
        raise PngError(f"{path}: bit depth {depth}, colour type {color_type}, interlace {interlace}: "
                       "only 8-bit RGB/RGBA without interlacing is read here")
    bpp = 3 if color_type == 2 else 4
    stride = width * bpp
    raw = zlib.decompress(idat)
    if len(raw) != height * (stride + 1):
        raise PngError(f"{path}: {len(raw)} bytes of image data for {width}x{height}x{bpp}")
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, stride + 1)
    image = np.zeros((height, stride), dtype=np.uint8)
    prior = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        kind, line = rows[y, 0], rows[y, 1:]
        if kind == 0:
            out = line.copy()
        elif kind == 1:  # Sub: running sum along the row, per channel
            out = (np.cumsum(line.reshape(width, bpp).astype(np.int64), axis=0) & 0xFF).astype(np.uint8).ravel()
        elif kind == 2:  # Up
            out = line + prior
        elif kind in (3, 4):
            buffer = bytearray(line.tobytes())
            (_average_row if kind == 3 else _paeth_row)(buffer, prior.tobytes(), bpp)
            out = np.frombuffer(bytes(buffer), dtype=np.uint8)
        else:
            raise PngError(f"{path}: row {y} has filter type {kind}")
        image[y] = out
        prior = image[y]
    return image.reshape(height, width, bpp)
