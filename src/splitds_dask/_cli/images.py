"""Images of arrays: a projection saved as ``.npy``, TIFF or PNG, and the 8-bit preview a PNG
shows (planes tiled by :func:`mosaic`, contrast stretched by :func:`to_uint8`).

The PNG encoder itself is :mod:`splitds_dask._cli.png`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from splitds_dask._cli.formats import require
from splitds_dask._errors import FormatError

__all__ = ["MOSAIC_GAP", "PROJECTION_SUFFIXES", "mosaic", "save_projection", "to_uint8"]

#: Black pixels between the z planes in the PNG mosaic.
MOSAIC_GAP = 4
PROJECTION_SUFFIXES = (".npy", ".tif", ".tiff", ".png")


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
    rows = max(1, math.isqrt(nz))
    cols = math.ceil(nz / rows)
    out = np.full((rows * ny + (rows - 1) * gap, cols * nx + (cols - 1) * gap), fill)
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


def save_projection(
    image: np.ndarray, target: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Save a computed projection as ``.npy`` or TIFF (values as they are) or PNG (a preview).

    The PNG is 8-bit, contrast-stretched between the 0.5 and 99.8 percentiles; a 3-D result is
    shown as its planes tiled in a grid. The file is written under a staging name and renamed
    into place when complete.

    Raises
    ------
    FormatError
        An unknown suffix, or a PNG of a result that is not 2-D or 3-D.
    FileExistsError
        ``target`` exists and ``overwrite`` is false, or it is a folder.
    """
    from splitds_dask._storage.atomic import check_replaceable, remove_stale_staging, staged_file

    path = Path(os.path.abspath(target))
    suffix = path.suffix.lower()
    if suffix not in PROJECTION_SUFFIXES:
        raise FormatError(f"{target}: a projection is written as .npy, .tif, .tiff or .png")
    if suffix == ".png" and image.ndim not in (2, 3):
        raise FormatError(
            f"{target}: a PNG shows a 2-D or 3-D result, this one has shape {image.shape} "
            "(write .npy or .tif instead)"
        )
    remove_stale_staging(path)
    check_replaceable(
        path,
        overwrite=overwrite,
        replaceable=Path.is_file,
        what=f"a {path.suffix} output",
        hint="pass --overwrite",
        folder=False,
    )
    with staged_file(path) as staging:
        if suffix == ".npy":
            with open(staging, "wb") as f:
                np.save(f, image, allow_pickle=False)
        elif suffix == ".png":
            from splitds_dask._cli.png import encode_png

            staging.write_bytes(encode_png(to_uint8(image if image.ndim == 2 else mosaic(image))))
        else:
            tifffile = require("tifffile", "tiff")
            tifffile.imwrite(staging, image, photometric="minisblack")
    return path
