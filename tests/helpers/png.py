"""An independent PNG decoder (signature, CRCs, grayscale scanlines), for the PNG writer's tests
and for the PNGs the command line writes."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """Split a PNG file into (type, data) chunks, checking the signature and every CRC."""
    assert data[:8] == SIGNATURE, "bad PNG signature"
    chunks = []
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body), f"bad CRC in chunk {kind!r}"
        chunks.append((kind, body))
        pos += 12 + length
    assert pos == len(data), "trailing bytes after the last chunk"
    return chunks


def decode_png(data: bytes) -> np.ndarray:
    """Decode a non-interlaced grayscale PNG whose scanlines all use filter type 0."""
    chunks = read_chunks(data)
    kinds = [kind for kind, _ in chunks]
    assert kinds[0] == b"IHDR", kinds
    assert kinds[-1] == b"IEND", kinds
    assert chunks[-1][1] == b""
    width, height, depth, color, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", chunks[0][1]
    )
    assert (color, compression, filtering, interlace) == (0, 0, 0, 0)
    assert depth in (8, 16)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = 1 + width * depth // 8
    assert len(raw) == height * stride
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, stride)
    assert (rows[:, 0] == 0).all(), "only filter type 0 (None) is expected"
    dtype = np.dtype(">u2") if depth == 16 else np.dtype(np.uint8)
    return rows[:, 1:].copy().view(dtype).reshape(height, width).astype(dtype.newbyteorder("="))


def png_size(path: str | Path) -> tuple[int, int]:
    """(height, width) from the IHDR chunk of a PNG file."""
    chunks = read_chunks(Path(path).read_bytes())
    width, height = struct.unpack(">II", chunks[0][1][:8])
    return height, width
