"""The benchmark datasets: generated once per data folder, reused while their spec matches.

* ``movie.npy``: a uint16 txzxyxx imaging movie (smooth tissue-shaped background, camera offset,
  Poisson shot noise; a pool of noise volumes is cycled under a slowly varying background, since
  drawing Poisson samples for every volume would dominate the set-up time).
* ``movie/``: that movie as a split dataset written **exactly as sashimi writes it**: one
  ``fl.save(path, {"stack_4D": block}, compression="blosc")`` per block, run by flammkuchen /
  PyTables in the old package's venv (Blosc filter 32001, blosclz, level 9, byte shuffle,
  PyTables' automatic chunk shape), with sashimi's ``stack_metadata.json`` keys.
* ``movie.zarr``: the same array as zarr v3, one zarr chunk per block file, with the same codec
  (``BloscCodec(cname="blosclz", clevel=9, shuffle="shuffle")``).
* ``many_<N>/``: ``N`` hard links to one tiny ``(1, 4, 4)`` block file.
* ``long_<N>/``: ``N`` block files hard-linked (cyclically) to the movie's block files, for
  longer movies without writing more data.
* ``cluster_<N>/``: ``N`` hard links to one tiny ``(1, 4, 8, 8)`` block file (the cluster
  workload's per-task cost).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np
from _oldpeer import run_old_spec

__all__ = ["BLOSC", "CLUSTER_BLOCK", "Config", "Datasets", "block_files", "name_width", "prepare"]

#: The Blosc settings sashimi's ``compression="blosc"`` gives in PyTables (filter 32001
#: cd_values ``(2, 2, 2, chunk_bytes, 9, 1)``): blosclz, level 9, byte shuffle.
BLOSC = {"cname": "blosclz", "clevel": 9, "shuffle": "shuffle"}
#: The same as our writer's ``compression=`` / ``compression_level=`` options.
OUR_COMPRESSION = ("blosc:blosclz", 9)
KEY = "stack_4D"
#: The cluster workload's block: tiny, so that a task's cost is all overhead.
CLUSTER_BLOCK = (1, 4, 8, 8)
_MAX_LINKS = 50_000


@dataclass(frozen=True)
class Config:
    movie_shape: tuple[int, int, int, int]
    block_frames: int
    write_frames: int  # volumes of the movie written by the write workload
    many_counts: tuple[int, ...]
    long_bytes: tuple[float, float]  # uncompressed sizes of the two long movies (memory)
    cluster_counts: tuple[int, ...]  # block counts of the cluster workload's datasets
    seed: int = 0

    @property
    def frame_bytes(self) -> int:
        return math.prod(self.movie_shape[1:]) * 2

    @property
    def block_bytes(self) -> int:
        return self.frame_bytes * self.block_frames

    def long_blocks(self) -> tuple[int, int]:
        return tuple(max(1, math.ceil(b / self.block_bytes)) for b in self.long_bytes)


FULL = Config(
    movie_shape=(240, 12, 512, 512),  # 1.51 GB, 30 blocks of 8 volumes (50 MB)
    block_frames=8,
    write_frames=96,  # 604 MB, 12 blocks
    many_counts=(10_000, 100_000, 1_000_000),
    long_bytes=(2e9, 8e9),
    cluster_counts=(1_000, 5_000, 20_000, 50_000),
)
QUICK = Config(
    movie_shape=(16, 2, 64, 64),
    block_frames=4,
    write_frames=8,
    many_counts=(100, 1_000, 10_000),
    long_bytes=(2 * 4 * 2 * 64 * 64 * 2, 8 * 4 * 2 * 64 * 64 * 2),
    cluster_counts=(200, 500),
)


@dataclass(frozen=True)
class Datasets:
    root: Path
    config: Config
    npy: Path
    movie: Path
    zarr: Path
    many: dict[int, Path]
    long: dict[int, Path]
    cluster: dict[int, Path]
    compressed_bytes: int

    @property
    def raw_bytes(self) -> int:
        return math.prod(self.config.movie_shape) * 2


def block_files(folder: Path) -> list[Path]:
    """A folder's block files in block order, as a user listing it by hand would find them."""
    files = [p for p in folder.iterdir() if p.suffix == ".h5" and p.stem.isdigit()]
    return sorted(files, key=lambda p: int(p.stem))


def _background(shape: tuple[int, int, int]) -> np.ndarray:
    nz, ny, nx = shape
    z = np.arange(nz, dtype=np.float32)[:, None, None] / max(nz - 1, 1)
    y = np.linspace(-1, 1, ny, dtype=np.float32)[None, :, None]
    x = np.linspace(-1, 1, nx, dtype=np.float32)[None, None, :]
    tissue = np.exp(-(((y / 0.7) ** 2 + (x / 0.8) ** 2) ** 2)) * (1.0 - 0.5 * z)
    texture = 1.0 + 0.3 * np.sin(5.0 * y + 2.0 * z) * np.cos(4.0 * x)
    return 100.0 + 250.0 * tissue * texture  # camera offset + tissue fluorescence (counts)


def _write_movie(path: Path, cfg: Config) -> None:
    rng = np.random.default_rng(cfg.seed)
    t, *frame = cfg.movie_shape
    bg = _background(tuple(frame))
    pool = [rng.poisson(bg).astype(np.uint16) for _ in range(min(16, t))]
    slow = np.round(10.0 * (bg - 100.0) / bg.max()).astype(np.uint16)  # smooth, 0..~10 counts
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=cfg.movie_shape)
    for i in range(t):
        amplitude = np.uint16(round(1.5 + 1.5 * math.sin(2 * math.pi * i / 97.0)))
        np.add(pool[i % len(pool)], slow * amplitude, out=out[i])
    out.flush()
    del out


def _metadata(shape: tuple[int, ...], block_frames: int) -> dict:
    # The keys sashimi (2024-) writes; data on disk is already the camera ROI.
    return {
        "shape_full": list(shape),
        "shape_block": [block_frames, *shape[1:]],
        "crop": [0, 0, int(shape[-1]), int(shape[-2])],
        "padding": [0] * len(shape),
        "voxel_size": [10.0, 0.6, 0.6],
    }


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj))


def _write_zarr(path: Path, npy: Path, cfg: Config) -> None:
    import zarr
    from zarr.codecs import BloscCodec

    data = np.load(npy, mmap_mode="r")
    arr = zarr.create_array(
        store=str(path),
        shape=data.shape,
        dtype=data.dtype,
        chunks=(cfg.block_frames, *data.shape[1:]),
        compressors=[BloscCodec(typesize=2, **BLOSC)],
        overwrite=True,
    )
    for t0 in range(0, data.shape[0], cfg.block_frames):
        arr[t0 : t0 + cfg.block_frames] = data[t0 : t0 + cfg.block_frames]


def name_width(n: int) -> int:
    """Digits in the block file names of a linked dataset of ``n`` blocks (zero-padded)."""
    return max(4, len(str(n - 1)))


def _link_dataset(folder: Path, sources: list[Path], n: int, metadata: dict) -> None:
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    width = name_width(n)
    for i in range(n):
        os.link(sources[i % len(sources)], tmp / f"{i:0{width}d}.h5")
    _write_json(tmp / "stack_metadata.json", metadata)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def prepare(root: Path, cfg: Config, log=print) -> Datasets:
    """Create (or reuse, when ``root/spec.json`` matches ``cfg``) every dataset under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    spec_file = root / "spec.json"
    spec = json.dumps(asdict(cfg), sort_keys=True)
    fresh = not (spec_file.is_file() and spec_file.read_text() == spec)
    npy, movie, zpath = root / "movie.npy", root / "movie", root / "movie.zarr"
    if fresh:
        spec_file.unlink(missing_ok=True)
        for p in root.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        log(f"generating the movie {cfg.movie_shape} uint16 ...")
        _write_movie(npy, cfg)
        log("writing its block files with flammkuchen in the old venv (as sashimi does) ...")
        run_old_spec(
            {
                "op": "write_blocks",
                "npy": str(npy),
                "out": str(movie),
                "block_frames": cfg.block_frames,
                "key": KEY,
            }
        )
        _write_json(movie / "stack_metadata.json", _metadata(cfg.movie_shape, cfg.block_frames))
        log("writing the zarr copy ...")
        _write_zarr(zpath, npy, cfg)
        log("linking the many-block and long datasets ...")
        tiny = root / "tiny_block.h5"
        with h5py.File(tiny, "w") as f:
            f.create_dataset("stack_3D", data=np.arange(16, dtype=np.uint16).reshape(1, 4, 4))
        for n in cfg.many_counts:
            # File systems cap the links per inode (ext4: 65,000): use enough copies.
            copies = [root / f"tiny_block_{n}_{k}.h5" for k in range(math.ceil(n / _MAX_LINKS))]
            for copy in copies:
                shutil.copyfile(tiny, copy)
            meta = {"shape_full": [n, 4, 4], "shape_block": [1, 4, 4]}
            _link_dataset(root / f"many_{n}", copies, n, meta)
        with h5py.File(root / "cluster_block.h5", "w") as f:
            f.create_dataset(KEY, data=np.arange(256, dtype=np.uint16).reshape(CLUSTER_BLOCK))
        for n in cfg.cluster_counts:
            copies = [root / f"cluster_block_{n}_{k}.h5" for k in range(math.ceil(n / _MAX_LINKS))]
            for copy in copies:
                shutil.copyfile(root / "cluster_block.h5", copy)
            meta = {"shape_full": [n, *CLUSTER_BLOCK[1:]], "shape_block": list(CLUSTER_BLOCK)}
            _link_dataset(root / f"cluster_{n}", copies, n, meta)
        sources = block_files(movie)
        for n in cfg.long_blocks():
            shape = (n * cfg.block_frames, *cfg.movie_shape[1:])
            _link_dataset(root / f"long_{n}", sources, n, _metadata(shape, cfg.block_frames))
        spec_file.write_text(spec)
    compressed = sum(p.stat().st_size for p in block_files(movie))
    return Datasets(
        root=root,
        config=cfg,
        npy=npy,
        movie=movie,
        zarr=zpath,
        many={n: root / f"many_{n}" for n in cfg.many_counts},
        long={n: root / f"long_{n}" for n in cfg.long_blocks()},
        cluster={n: root / f"cluster_{n}" for n in cfg.cluster_counts},
        compressed_bytes=compressed,
    )


def warm_page_cache(paths: list[Path]) -> None:
    """Read every file once, so that every peer starts from the same warm page cache."""
    for top in paths:
        for dirpath, _, names in os.walk(top):
            for name in names:
                with open(os.path.join(dirpath, name), "rb") as f:
                    while f.read(1 << 24):
                        pass
