"""A minimal PNG writer for grayscale images (8 and 16 bit), using only ``zlib`` and ``struct``.

Written from the PNG specification (ISO/IEC 15948, W3C PNG 2nd edition): the 8-byte signature,
then chunks ``IHDR`` (size, bit depth, colour type 0 = grayscale), ``IDAT`` (the zlib stream of
the scanlines, each preceded by its filter type byte; filter type 0, "None", is used) and
``IEND``. Each chunk is ``length (4 bytes, big endian) + type + data + CRC-32(type + data)``.
16-bit samples are stored big endian.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["encode_png", "write_png"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPE_GRAY = 0
_MAX_DIMENSION = 2**31 - 1


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png(image: np.ndarray, *, compression_level: int = 6) -> bytes:
    """Encode a 2-D grayscale image as PNG bytes.

    Parameters
    ----------
    image : numpy.ndarray
        A 2-D array of ``uint8`` (8-bit grayscale) or ``uint16`` (16-bit grayscale) values, or
        ``bool`` (written as 8-bit 0/255). Row 0 is the top of the image.
    compression_level : int, optional
        zlib level, 0 to 9.

    Returns
    -------
    bytes
        The complete PNG file.

    Raises
    ------
    TypeError
        The dtype is not ``uint8``, ``uint16`` or ``bool``.
    ValueError
        The image is not 2-D, or has no pixels, or is too large for PNG.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {image.shape}")
    height, width = image.shape
    if height == 0 or width == 0:
        raise ValueError(f"a PNG image needs at least one pixel, got shape {image.shape}")
    if height > _MAX_DIMENSION or width > _MAX_DIMENSION:
        raise ValueError(f"image shape {image.shape} is too large for PNG")
    if image.dtype == bool:
        image = image.astype(np.uint8) * np.uint8(255)
    if image.dtype == np.uint8:
        bit_depth, samples = 8, image
    elif image.dtype == np.uint16:
        bit_depth, samples = 16, image.astype(">u2", copy=False)
    else:
        raise TypeError(f"expected uint8, uint16 or bool pixels, got {image.dtype}")
    header = struct.pack(">IIBBBBB", width, height, bit_depth, _COLOR_TYPE_GRAY, 0, 0, 0)
    # Every scanline starts with its filter type: 0 (None), the row's bytes as they are.
    rows = np.empty((height, 1 + width * samples.itemsize), dtype=np.uint8)
    rows[:, 0] = 0
    rows[:, 1:] = np.ascontiguousarray(samples).view(np.uint8).reshape(height, -1)
    idat = zlib.compress(rows.tobytes(), compression_level)
    return b"".join(
        (PNG_SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", idat), _chunk(b"IEND", b""))
    )


def write_png(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Write a 2-D grayscale image as a PNG file.

    The file is written under a staging name and renamed into place, so a reader never sees a
    partial image.

    Parameters
    ----------
    path : str or Path
        The file to write (replaced if it exists).
    image : numpy.ndarray
        2-D ``uint8`` or ``uint16`` (or ``bool``) array; see :func:`encode_png`.

    Returns
    -------
    Path
        ``path``.
    """
    from splitds_dask._storage.atomic import staged_file

    path = Path(path)
    data = encode_png(image)
    with staged_file(path, durable=False) as staging:
        staging.write_bytes(data)
    return path
