"""A synthetic calcium-imaging movie: a lazy ``uint16`` dask array with axes t, z, y, x.

A smooth tissue-shaped background, Gaussian cells that flash with calcium transients, shot noise
and a camera offset. Every frame's randomness is seeded by ``(seed, frame)``, so the data does
not depend on the chunking or on the scheduler.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_BLOCK_FRAMES",
    "MOVIE_AXES",
    "MOVIE_SCALE",
    "MOVIE_UNITS",
    "FRAME_BYTES",
    "FRAME_SHAPE",
    "N_CELLS",
    "synthetic_movie",
]

#: Shape of one time point of the demo movie: z planes x y x x.
FRAME_SHAPE = (8, 256, 256)
#: Bytes of one time point (uint16).
FRAME_BYTES = math.prod(FRAME_SHAPE) * 2
#: Time points per chunk (the demo's block files): 32 MiB blocks.
DEFAULT_BLOCK_FRAMES = 32
#: Number of simulated cells.
N_CELLS = 64

#: Physical metadata of the movie, that of a larval zebrafish brain under a light-sheet
#: microscope: 5 volumes per second (8 planes each, 40 planes/s), planes 7 µm apart, 0.6 µm
#: pixels (the synthetic cells, 6 to 9 pixels across, are then 4 to 6 µm somata; their calcium
#: transients decay over 3 to 10 frames, 0.6 to 2 s, as GCaMP6s does). The demo and napari's
#: sample both record it.
MOVIE_AXES = ("t", "z", "y", "x")
MOVIE_SCALE = (0.2, 7.0, 0.6, 0.6)
MOVIE_UNITS = ("second", "micrometer", "micrometer", "micrometer")

_CAMERA_OFFSET = 100.0  # camera counts added to every pixel, as sCMOS cameras do
_KERNEL_FRAMES = 48  # frames a calcium transient lasts (its tail is negligible after that)


@dataclass(frozen=True)
class _Scene:
    """Everything about the synthetic sample that does not change over time."""

    static: np.ndarray  # expected photons per voxel without activity (z, y, x), float32
    boxes: tuple[tuple[slice, slice, slice], ...]  # where each cell's footprint lies
    footprints: tuple[np.ndarray, ...]  # each cell's resting photons over its box, float32
    rates: np.ndarray  # transient onsets per frame, per cell
    amplitudes: np.ndarray  # dF/F of one transient, per cell
    kernels: np.ndarray  # (_KERNEL_FRAMES, n_cells): calcium transient shape, peak 1


@functools.lru_cache(maxsize=4)
def _scene(seed: int, frame_shape: tuple[int, int, int], n_cells: int) -> _Scene:
    """The sample: a tissue-shaped smooth background and Gaussian cells (same for every block)."""
    rng = np.random.default_rng([seed, 0xCE11])
    nz, ny, nx = frame_shape
    z = np.arange(nz, dtype=np.float32)[:, None, None]
    y = (np.arange(ny, dtype=np.float32)[None, :, None] + 0.5) / ny - 0.5
    x = (np.arange(nx, dtype=np.float32)[None, None, :] + 0.5) / nx - 0.5
    # Tissue: an ellipse that narrows with depth, with a soft edge, dimmer in deeper planes.
    depth = z / max(nz - 1, 1)
    ry, rx = 0.36 - 0.06 * depth, 0.42 - 0.08 * depth
    radius = np.sqrt((y / ry) ** 2 + (x / rx) ** 2)
    tissue = 1.0 / (1.0 + np.exp((radius - 1.0) / 0.04))
    texture = np.zeros((1, ny, nx), dtype=np.float32)
    for _ in range(6):  # low spatial frequency autofluorescence
        cy, cx = rng.uniform(-0.35, 0.35, 2)
        width = rng.uniform(0.08, 0.2)
        texture += rng.uniform(0.3, 1.0) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / width**2)
    static = (3.0 + tissue * (25.0 + 20.0 * texture) * (1.0 - 0.4 * depth)).astype(np.float32)

    boxes: list[tuple[slice, slice, slice]] = []
    footprints: list[np.ndarray] = []
    while len(boxes) < n_cells:
        cz = rng.uniform(0, nz - 1) if nz > 1 else 0.0
        cy, cx = rng.uniform(-0.5, 0.5, 2)
        d = cz / max(nz - 1, 1)
        if (cy / (0.36 - 0.06 * d - 0.04)) ** 2 + (cx / (0.42 - 0.08 * d - 0.04)) ** 2 > 1:
            continue  # cells lie inside the tissue
        cy, cx = (cy + 0.5) * ny - 0.5, (cx + 0.5) * nx - 0.5
        sigma = rng.uniform(2.5, 4.0) * min(ny, nx) / 256
        sigma_z = 0.6
        resting = rng.uniform(40.0, 110.0)
        zs = slice(max(0, math.floor(cz - 2)), min(nz, math.ceil(cz + 2) + 1))
        ys = slice(max(0, math.floor(cy - 3 * sigma)), min(ny, math.ceil(cy + 3 * sigma) + 1))
        xs = slice(max(0, math.floor(cx - 3 * sigma)), min(nx, math.ceil(cx + 3 * sigma) + 1))
        bz, by, bx = np.ogrid[zs, ys, xs]
        blob = np.exp(
            -((bz - cz) ** 2) / (2 * sigma_z**2)
            - ((by - cy) ** 2 + (bx - cx) ** 2) / (2 * sigma**2)
        )
        footprint = (resting * blob).astype(np.float32)
        static[zs, ys, xs] += footprint
        boxes.append((zs, ys, xs))
        footprints.append(footprint)

    rates = rng.uniform(0.01, 0.06, n_cells)
    amplitudes = rng.uniform(0.8, 2.5, n_cells)
    # Fast rise (under a frame), exponential decay over 3 to 10 frames.
    lag = np.arange(_KERNEL_FRAMES, dtype=np.float64)[:, None]
    tau_decay = rng.uniform(3.0, 10.0, n_cells)
    kernels = np.exp(-lag / tau_decay) - np.exp(-lag / 0.5)
    kernels /= kernels.max(axis=0)
    return _Scene(
        static=static,
        boxes=tuple(boxes),
        footprints=tuple(footprints),
        rates=rates,
        amplitudes=amplitudes,
        kernels=kernels.astype(np.float32),
    )


def _activity(scene: _Scene, seed: int, start: int, stop: int) -> np.ndarray:
    """dF/F of every cell for frames ``start:stop``: (stop - start, n_cells).

    Transient onsets of frame ``t`` come from a generator seeded with ``(seed, 1, t)``, so the
    activity of a frame does not depend on how the movie is cut into blocks.
    """
    n_cells = len(scene.rates)
    first = max(0, start - _KERNEL_FRAMES + 1)
    onsets = np.empty((stop - first, n_cells), dtype=np.float32)
    for i, t in enumerate(range(first, stop)):
        onsets[i] = np.random.default_rng([seed, 1, t]).poisson(scene.rates)
    onsets *= scene.amplitudes.astype(np.float32)
    trace = np.zeros((stop - start, n_cells), dtype=np.float32)
    for lag in range(_KERNEL_FRAMES):
        # trace[t] += onsets[t - lag] * kernel[lag], for the t whose t - lag is generated
        lo = max(start, first + lag)
        if lo >= stop:
            break
        trace[lo - start :] += onsets[lo - lag - first : stop - lag - first] * scene.kernels[lag]
    return trace


def _movie_block(
    seed: int,
    frame_shape: tuple[int, int, int],
    n_cells: int,
    block_frames: int,
    n_frames: int,
    block_id: tuple[int, ...],
) -> np.ndarray:
    """Frames ``block_id[0] * block_frames`` on, as camera counts (uint16)."""
    scene = _scene(seed, frame_shape, n_cells)
    start = block_id[0] * block_frames
    stop = min(start + block_frames, n_frames)
    trace = _activity(scene, seed, start, stop)
    out = np.empty((stop - start, *frame_shape), dtype=np.uint16)
    photons = np.empty(frame_shape, dtype=np.float32)
    noise = np.empty(frame_shape, dtype=np.float32)
    for i, t in enumerate(range(start, stop)):
        photons[...] = scene.static
        for c, (box, footprint) in enumerate(zip(scene.boxes, scene.footprints, strict=True)):
            if trace[i, c] > 0.01:
                photons[box] += trace[i, c] * footprint
        # Shot noise: Poisson(photons), drawn with its normal approximation N(λ, λ) for speed
        # (exact Poisson sampling would make generating the data slower than writing it).
        np.random.default_rng([seed, 2, t]).standard_normal(dtype=np.float32, out=noise)
        noise *= np.sqrt(photons)
        photons += noise
        photons += _CAMERA_OFFSET
        np.clip(photons, 0, 65535, out=photons)
        np.rint(photons, out=photons)
        out[i] = photons
    return out


def synthetic_movie(
    n_frames: int,
    *,
    frame_shape: tuple[int, int, int] = FRAME_SHAPE,
    block_frames: int = DEFAULT_BLOCK_FRAMES,
    n_cells: int = N_CELLS,
    seed: int = 0,
) -> Any:
    """A lazy synthetic calcium-imaging movie (``uint16``, axes t, z, y, x) as a dask array.

    A smooth tissue-shaped background and ``n_cells`` Gaussian cells whose fluorescence follows
    random calcium transients (fast rise, exponential decay), plus shot noise and a camera
    offset. Each chunk is computed independently (memory stays bounded by a few chunks), and
    every frame's randomness is seeded by ``(seed, frame)``: the data does not depend on the
    chunking or the scheduler.

    Parameters
    ----------
    n_frames : int
        Number of time points.
    frame_shape : tuple of int, optional
        ``(z, y, x)`` of one time point.
    block_frames : int, optional
        Time points per chunk.
    n_cells : int, optional
        Number of cells.
    seed : int, optional
        Seed of everything random.

    Returns
    -------
    dask.array.Array
        Chunked ``(block_frames, *frame_shape)``.
    """
    import dask.array as da
    from dask.base import tokenize

    if n_frames < 1 or block_frames < 1:
        raise ValueError("n_frames and block_frames must be positive")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    frame_shape = (int(frame_shape[0]), int(frame_shape[1]), int(frame_shape[2]))
    full, rest = divmod(n_frames, block_frames)
    chunks_t = (block_frames,) * full + ((rest,) if rest else ())
    token = tokenize(seed, frame_shape, n_cells, block_frames, n_frames)
    return da.map_blocks(
        _movie_block,
        seed,
        frame_shape,
        n_cells,
        block_frames,
        n_frames,
        chunks=(chunks_t, *((n,) for n in frame_shape)),
        dtype=np.uint16,
        meta=np.empty((0, 0, 0, 0), dtype=np.uint16),
        name=f"synthetic-movie-{token}",
    )
