"""The 8-bit preview a PNG of an array shows: planes tiled by :func:`mosaic`, contrast stretched
by :func:`to_uint8`, within the size :func:`png_too_large` allows.

The PNG encoder itself is :mod:`splitds_dask._cli.png`; the projection is written by
:func:`splitds_dask._cli.targets.write_projection`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = [
    "MAX_PNG_PIXELS",
    "MAX_PNG_PLANES",
    "MOSAIC_GAP",
    "Layout",
    "mosaic",
    "mosaic_layout",
    "png_too_large",
    "to_uint8",
]

#: Black pixels between the z planes in the PNG mosaic.
MOSAIC_GAP = 4
#: A PNG preview tiles at most this many planes...
MAX_PNG_PLANES = 64
#: ... into at most this many pixels (a larger image is no preview; its float64 working copies
#: alone would take gigabytes).
MAX_PNG_PIXELS = 64 * 2**20


class Layout(NamedTuple):
    """How :func:`mosaic` tiles planes: the grid, and the image's size in pixels."""

    rows: int
    columns: int
    height: int
    width: int


def mosaic_layout(shape: Sequence[int], gap: int = MOSAIC_GAP) -> Layout:
    """The grid and size of the mosaic of a (z, y, x) volume, or of a 2-D image (one tile).

    ``rows = floor(sqrt(z))`` and ``columns = ceil(z / rows)`` (8 planes → 2x4).
    """
    nz, ny, nx = (1, *shape) if len(shape) == 2 else shape
    rows = max(1, math.isqrt(nz))
    cols = math.ceil(nz / rows)
    return Layout(rows, cols, rows * ny + (rows - 1) * gap, cols * nx + (cols - 1) * gap)


def png_too_large(shape: Sequence[int]) -> str | None:
    """Why a PNG preview of an array of ``shape`` (2-D or 3-D) is refused; None if it is not.

    More than :data:`MAX_PNG_PLANES` planes, or more than :data:`MAX_PNG_PIXELS` pixels.
    """
    layout = mosaic_layout(shape)
    planes = shape[0] if len(shape) == 3 else 1
    pixels = layout.height * layout.width
    if planes <= MAX_PNG_PLANES and pixels <= MAX_PNG_PIXELS:
        return None
    what = f"{planes} planes tiled into " if planes > 1 else ""
    return (
        f"a PNG of this result would be {what}{layout.width}x{layout.height} pixels (a preview "
        f"shows at most {MAX_PNG_PLANES} planes and {MAX_PNG_PIXELS // 2**20} megapixels)"
    )


def mosaic(volume: np.ndarray, gap: int = MOSAIC_GAP, fill: float = np.nan) -> np.ndarray:
    """Tile the planes of a (z, y, x) volume into one 2-D image, row by row.

    ``rows = floor(sqrt(z))`` and ``columns = ceil(z / rows)`` (8 planes → 2x4); tiles are
    separated by ``gap`` pixels of ``fill``.

    Parameters
    ----------
    volume : numpy.ndarray
        3-D array (a 2-D array is one tile).
    gap : int, optional
        Pixels between tiles.
    fill : float, optional
        Value of the gaps and of unused tiles.

    Returns
    -------
    numpy.ndarray
        2-D float64 array.
    """
    volume = np.asarray(volume, dtype=np.float64)
    if volume.ndim == 2:
        volume = volume[None]
    if volume.ndim != 3:
        raise ValueError(f"expected a (z, y, x) volume, got shape {volume.shape}")
    nz, ny, nx = volume.shape
    layout = mosaic_layout(volume.shape, gap)
    cols = layout.columns
    out = np.full((layout.height, layout.width), fill)
    for k in range(nz):
        r, c = divmod(k, cols)
        out[r * (ny + gap) : r * (ny + gap) + ny, c * (nx + gap) : c * (nx + gap) + nx] = volume[k]
    return out


def to_uint8(image: np.ndarray, low: float = 0.5, high: float = 99.8) -> np.ndarray:
    """Contrast-stretch to 8 bit: the ``low`` percentile → 0, the ``high`` percentile → 255.

    NaN pixels (mosaic gaps) become 0 and are left out of the percentiles.

    Parameters
    ----------
    image : numpy.ndarray
        Any real array.
    low, high : float, optional
        Percentiles mapped to 0 and 255.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of the same shape.
    """
    image = np.asarray(image, dtype=np.float64)
    valid = image[np.isfinite(image)]
    if valid.size == 0:
        return np.zeros(image.shape, dtype=np.uint8)
    lo, hi = np.percentile(valid, [low, high])
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    scaled = np.nan_to_num((image - lo) * scale, nan=0.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
