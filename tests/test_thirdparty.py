"""Third-party code written for split_dataset, unchanged, on this package through its alias.

fimpy 0.1.4's pipeline functions (their joblib worker processes included) and
napari-split-dataset 0.3.0's reader run in the venv of :mod:`tests.helpers.thirdparty`, where
``import split_dataset`` is answered by splitds_dask and no ``split-dataset`` is installed. They
read datasets written by the original package (split_dataset 0.4.4, in the venv of
:mod:`tests.helpers.oldpkg`) and by this one. What they write is read back here with h5py and
json alone, and compared with what numpy computes from the known movie.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import hdf5plugin  # noqa: F401 - fimpy's workers write Blosc-compressed blocks
import numpy as np
import pytest
import tifffile
from numpy.testing import assert_allclose, assert_array_equal

import splitds_dask as sd
from tests.helpers.oldpkg import run_old_checked
from tests.helpers.thirdparty import run_thirdparty, run_thirdparty_checked

# ``index`` (the venvs are built from the package index) is added by conftest.py.
pytestmark = [pytest.mark.subprocess, pytest.mark.slow]

# A small calcium-imaging movie (t, z, y, x). Values from 1000 to 1399: fimpy's calc_f0 sums
# frames in uint16 and its dff casts to int16, both of which would wrap with full-range values.
RNG = np.random.default_rng(14)
MOVIE = RNG.integers(1000, 1400, size=(24, 3, 32, 40), dtype=np.uint16)
MOVIE_BLOCK = (12, 2, 32, 40)  # splits t and z (the last z block is one plane)
STACK = RNG.integers(0, 2**16, size=(3, 32, 40), dtype=np.uint16)
STACK_BLOCK = (2, 16, 40)

# Workarounds for the third-party bugs on numpy 2, for the venv's processes only (this file goes
# on their PYTHONPATH, which joblib's, multiprocessing's and dask's workers inherit).
SITECUSTOMIZE = '''\
"""Only for tests/test_thirdparty.py: third-party bugs on numpy 2, see there."""
import numpy

# flammkuchen 1.0.3 tests dtypes against ``np.unicode_`` and ``np.string_`` (removed in numpy 2)
# in every fl.save, which fimpy's workers call: test_flammkuchen_save_fails_on_numpy_2 shows the
# bug; drop this when that test fails. (fimpy's ``np.float`` is in loading/volumetric.py, which
# none of the functions checked reaches.)
if not hasattr(numpy, "unicode_"):
    numpy.unicode_ = numpy.str_
if not hasattr(numpy, "string_"):
    numpy.string_ = numpy.bytes_
'''

# Functions the venv's workers import by name.
WORK_MODULE = '''\
"""Only for tests/test_thirdparty.py: functions for the worker processes of the venv."""
import json
import os
from pathlib import Path

import numpy as np
from joblib._parallel_backends import LokyBackend


def probe(_=None):
    """Which split_dataset this process sees, and which process it is."""
    import split_dataset
    import splitds_dask

    return {
        "pid": os.getpid(),
        "module": split_dataset.SplitDataset.__module__,
        "is_splitds": split_dataset.SplitDataset is splitds_dask.SplitDataset,
    }


def scale(block, factor, probe_dir):
    Path(probe_dir, "%d.json" % os.getpid()).write_text(json.dumps(probe()))
    return block.astype(np.float32) * factor


def time_mean(block):
    return block.mean(axis=0, keepdims=True)


class CappedLoky(LokyBackend):
    """loky with at most 2 workers: make_anatomy and average_trials pass n_jobs=20 themselves,
    which wins over ``parallel_config(n_jobs=...)``, but a backend chosen by parallel_config
    decides how many workers n_jobs=20 means."""

    def effective_n_jobs(self, n_jobs):
        return min(2, super().effective_n_jobs(n_jobs))
'''

# Runs fimpy's functions on the dataset argv[1], writing their outputs into argv[2] and what
# each step did (or its traceback) into argv[2]/steps.json.
PIPELINE = r"""
import json, os, sys, traceback
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed, parallel_config, register_parallel_backend

import split_dataset
from fimpy.pipeline.common import run_in_blocks
from fimpy.pipeline.general import average_trials, calc_f0, dff, downsample, make_anatomy

import tp_work

source, out = Path(sys.argv[1]), Path(sys.argv[2])
register_parallel_backend("capped", tp_work.CappedLoky)
steps = {"parent_pid": os.getpid()}


def step(name, run):
    try:
        steps[name] = {"ok": True, "value": run()}
    except Exception:
        steps[name] = {"ok": False, "error": traceback.format_exc()}


def described(ds):
    return {"class": type(ds).__module__ + "." + type(ds).__qualname__, "shape": list(ds.shape)}


ds = split_dataset.SplitDataset(source)
probes = out / "probes"
probes.mkdir()
step("run_in_blocks_scale", lambda: described(run_in_blocks(
    tp_work.scale, ds, 3, str(probes), output_dir=out, n_jobs=2,
    process_shape_block=(6, 3, 16, 40))))
step("run_in_blocks_time_mean", lambda: described(run_in_blocks(
    tp_work.time_mean, ds, output_dir=out, output_shape_full=(2, 3, 32, 40), n_jobs=2)))
with parallel_config(backend="capped"):
    step("capped_workers", lambda: len(set(
        Parallel(n_jobs=20)(delayed(os.getpid)() for _ in range(40)))))
    step("make_anatomy", lambda: described(make_anatomy(ds, output_dir=out)))


def f0_step():
    f0 = calc_f0(ds, list(range(10)))
    np.save(out / "f0.npy", f0)
    # calc_f0 adds frames in place into the first one it read: the dataset must not change.
    np.save(out / "frame0_after_f0.npy", ds[0, :, :, :])
    return described(f0)


step("calc_f0", f0_step)
step("dff", lambda: described(dff(ds, np.load(out / "f0.npy"), output_dir=out, n_jobs=2)))
step("downsample", lambda: described(
    downsample(ds, downsampling=(2, 1, 2, 2), output_dir=out, n_jobs=2)))
with parallel_config(backend="capped"):
    step("average_trials", lambda: average_trials(
        ds, start=2, trial_duration=5, n_trials=4, block_size=(2, 16, 40), output_dir=out))
steps["probes"] = [json.loads(p.read_text()) for p in sorted(probes.iterdir())]
(out / "steps.json").write_text(json.dumps(steps))
"""

# napari-split-dataset's reader on each folder argv[2:]; what it read into argv[1]/<name>.npy.
NAPARI = r"""
import json, sys
from pathlib import Path

import numpy as np
import split_dataset
from napari_split_dataset import napari_get_reader

out = Path(sys.argv[1])
result = {}
for path in sys.argv[2:]:
    name = Path(path).name
    layers = napari_get_reader(path)(path)
    if layers is None:
        result[name] = None
        continue
    [(data, kwargs, layer_type)] = layers
    result[name] = {
        "class": type(data).__module__ + "." + type(data).__qualname__,
        "is_split_dataset": isinstance(data, split_dataset.SplitDataset),
        "shape": list(data.shape),
        "kwargs": {k: [float(v) for v in limits] for k, limits in kwargs.items()},
        "layer_type": layer_type,
    }
    np.save(out / (name + ".npy"), data[(slice(None),) * data.ndim])
    if data.ndim == 4:  # one plane, as napari asks for it
        np.save(out / (name + "_plane.npy"), data[5, 1, :, :])
print(json.dumps(result))
"""

# fimpy's loader of two-photon tif files (argv[1]) into a split dataset beside them (argv[2]).
LOAD_2P = r"""
import json, sys
from pathlib import Path

import numpy as np
from fimpy.loading.planewise import load_2p

ds = load_2p(sys.argv[1], frames_per_plane=24, folder_dest=Path(sys.argv[2]))
np.save(Path(sys.argv[2]) / "loaded.npy", ds[:, :, :, :])
print(json.dumps({"class": type(ds).__module__ + "." + type(ds).__qualname__,
                  "shape": list(ds.shape)}))
"""


class Pipeline(NamedTuple):
    """What the pipeline script left: its output folder and its steps.json."""

    out: Path
    steps: dict[str, Any]


@pytest.fixture(scope="module")
def support(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder put on the venv's PYTHONPATH: the numpy 2 workarounds and the worker module."""
    folder = tmp_path_factory.mktemp("thirdparty_support")
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (folder / "tp_work.py").write_text(WORK_MODULE)
    return folder


# The original package writes MOVIE (argv[2], blocks argv[3]) with save_to_split_dataset and
# STACK (argv[4], blocks argv[5]) block by block, into the folder argv[1].
OLD_WRITER = r"""
import json, sys
from pathlib import Path

import numpy as np
from split_dataset import EmptySplitDataset, save_to_split_dataset

base = Path(sys.argv[1])
movie_block, stack_block = tuple(json.loads(sys.argv[3])), tuple(json.loads(sys.argv[5]))
save_to_split_dataset(np.load(sys.argv[2]), base, block_size=movie_block, prefix="movie")
stack = np.load(sys.argv[4])
new = EmptySplitDataset(base, "stack", shape_full=stack.shape, shape_block=stack_block)
for n, (_, slices) in enumerate(new.slices()):
    new.save_block_data(n, stack[slices])
new.finalize()
"""


@pytest.fixture(scope="module", params=["old", "ours"])
def written(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding ``movie`` (MOVIE) and ``stack`` (STACK), written by the original package
    or by this one."""
    base = tmp_path_factory.mktemp(f"written_{request.param}")
    if request.param == "old":
        arrays = tmp_path_factory.mktemp("arrays")
        np.save(arrays / "movie.npy", MOVIE)
        np.save(arrays / "stack.npy", STACK)
        run_old_checked(
            OLD_WRITER,
            base,
            arrays / "movie.npy",
            json.dumps(MOVIE_BLOCK),
            arrays / "stack.npy",
            json.dumps(STACK_BLOCK),
        )
    else:
        sd.to_split_dataset(MOVIE, base / "movie", MOVIE_BLOCK)
        sd.to_split_dataset(STACK, base / "stack", STACK_BLOCK)
    return base


@pytest.fixture(scope="module")
def pipeline(written: Path, support: Path, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    out = tmp_path_factory.mktemp("fimpy_out")
    run_thirdparty_checked(PIPELINE, written / "movie", out, pythonpath=[support], cwd=out)
    return Pipeline(out, json.loads((out / "steps.json").read_text()))


def _step(pipeline: Pipeline, name: str) -> Any:
    """What step ``name`` of the pipeline script returned; fails with its traceback if it raised."""
    step = pipeline.steps[name]
    assert step["ok"], f"{name} raised in the third-party venv:\n{step['error']}"
    return step["value"]


def _read_folder(folder: Path) -> np.ndarray:
    """A split dataset read with json and h5py alone: block files in name order (or the order of
    the metadata's ``files``), in C order of the block grid, data under the key ``stack*``."""
    meta = json.loads((folder / "stack_metadata.json").read_text())
    full, block = tuple(meta["shape_full"]), tuple(meta["shape_block"])
    assert not any(meta.get("padding") or ()), meta
    names = meta.get("files") or sorted(p.name for p in folder.glob("*.h5"))
    grid = [math.ceil(n / b) for n, b in zip(full, block, strict=True)]
    assert len(names) == math.prod(grid), (names, grid)
    out: np.ndarray | None = None
    for name, position in zip(names, itertools.product(*map(range, grid)), strict=True):
        with h5py.File(folder / name, "r") as f:
            [key] = [k for k in f if k.startswith("stack")]
            data = f[key][()]
        region = tuple(
            slice(p * b, min((p + 1) * b, n)) for p, b, n in zip(position, block, full, strict=True)
        )
        if out is None:
            out = np.empty(full, data.dtype)
        assert data.shape == out[region].shape, (name, data.shape, region)
        out[region] = data
    assert out is not None
    return out


def _assert_read(folder: Path, expected: np.ndarray) -> None:
    found = _read_folder(folder)
    assert found.dtype == expected.dtype, (found.dtype, expected.dtype)
    assert_array_equal(found, expected)


def _is_ours(described: dict[str, Any]) -> bool:
    return str(described["class"]).startswith("splitds_dask.")


def _assert_alias(probe: dict[str, Any]) -> None:
    """A worker's probe saw splitds_dask's classes under ``import split_dataset``."""
    assert probe["is_splitds"], probe
    assert probe["module"].split(".")[0] == "splitds_dask", probe


ALIASED = r"""
import importlib, json
from importlib import metadata

import splitds_dask

where = {
    "split_dataset": ("SplitDataset", "EmptySplitDataset", "Blocks", "save_to_split_dataset"),
    "split_dataset.blocks": ("Blocks",),
    "split_dataset.split_dataset": ("SplitDataset", "EmptySplitDataset", "save_to_split_dataset"),
}
same = {
    module + "." + name: getattr(importlib.import_module(module), name)
    is getattr(splitds_dask, name)
    for module, names in where.items()
    for name in names
}
dists = sorted(d.metadata["Name"].lower() for d in metadata.distributions())
print(json.dumps({"dists": dists, "same": same}))
"""


def test_venv_answers_split_dataset_with_splitds_dask() -> None:
    """No split-dataset is installed, and the alias gives splitds_dask's API, submodules too."""
    proc = run_thirdparty_checked(ALIASED)
    # Every worker of a pipeline imports it: a warning there is printed by every process.
    assert proc.stderr == ""
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "split-dataset" not in found["dists"]
    assert "split_dataset" not in found["dists"]
    assert {"fimpy", "napari-split-dataset", "splitds-dask"} <= set(found["dists"])
    assert len(found["same"]) == 8, found
    assert all(found["same"].values()), found


def test_flammkuchen_save_fails_on_numpy_2(tmp_path: Path) -> None:
    """The bug the venv's sitecustomize.py works around: when this fails, drop the workaround."""
    proc = run_thirdparty(
        "import sys, numpy, flammkuchen\nflammkuchen.save(sys.argv[1], numpy.arange(3))",
        tmp_path / "a.h5",
    )
    assert proc.returncode != 0, "flammkuchen.save works on numpy 2 now: drop SITECUSTOMIZE"
    assert "AttributeError" in proc.stderr, proc.stderr
    assert "unicode_" in proc.stderr, proc.stderr


def test_run_in_blocks_scale(pipeline: Pipeline) -> None:
    """A function of a module, with an extra argument, over blocks of another shape than the
    files' (6 frames, 3 planes, half the rows), in 2 joblib workers."""
    assert _is_ours(_step(pipeline, "run_in_blocks_scale"))
    _assert_read(pipeline.out / "scale", MOVIE.astype(np.float32) * 3)
    parent = pipeline.steps["parent_pid"]
    workers = {p["pid"] for p in pipeline.steps["probes"]} - {parent}
    assert workers, pipeline.steps["probes"]  # blocks after the first ran in worker processes
    for p in pipeline.steps["probes"]:
        _assert_alias(p)


def test_run_in_blocks_time_mean(pipeline: Pipeline) -> None:
    """A reducing function: one mean frame per block of 12, output_shape_full given."""
    assert _is_ours(_step(pipeline, "run_in_blocks_time_mean"))
    expected = MOVIE.reshape(2, 12, *MOVIE.shape[1:]).mean(axis=1)
    _assert_read(pipeline.out / "time_mean", expected)


def test_make_anatomy(pipeline: Pipeline) -> None:
    # make_anatomy asks joblib for 20 workers; the script's "capped" backend makes that 2.
    assert _step(pipeline, "capped_workers") <= 2
    described = _step(pipeline, "make_anatomy")
    assert _is_ours(described)
    assert described["shape"] == list(MOVIE.shape[1:])
    _assert_read(pipeline.out / "anatomy", MOVIE.mean(axis=0))


def test_calc_f0(pipeline: Pipeline) -> None:
    _step(pipeline, "calc_f0")
    assert_array_equal(np.load(pipeline.out / "f0.npy"), MOVIE[:10].sum(axis=0) / 10)
    assert_array_equal(np.load(pipeline.out / "frame0_after_f0.npy"), MOVIE[0])


def test_dff(pipeline: Pipeline) -> None:
    assert _is_ours(_step(pipeline, "dff"))
    f0 = MOVIE[:10].sum(axis=0) / 10
    expected = (128 * (MOVIE - f0) / np.maximum(f0, 1)).astype(np.int16)
    assert np.abs(expected).max() > 10  # the movie's changes show, and no value wrapped
    _assert_read(pipeline.out / "dff", expected)


def test_downsample(pipeline: Pipeline) -> None:
    """fimpy's default method, np.sum over blocks of 2 frames x 2 x 2 pixels (uint64 sums)."""
    assert _is_ours(_step(pipeline, "downsample"))
    expected = MOVIE.reshape(12, 2, 3, 1, 16, 2, 20, 2).sum(axis=(1, 3, 5, 7))
    _assert_read(pipeline.out / "downsampled", expected)


def test_average_trials(pipeline: Pipeline) -> None:
    """Sums (in uint32, then numpy's sum) of 4 trials of 5 frames from frame 2."""
    assert _step(pipeline, "average_trials") is None  # it returns nothing
    trials = MOVIE[2:22].reshape(4, 5, *MOVIE.shape[1:])
    _assert_read(pipeline.out / "trial_averages", np.sum(trials.astype(np.uint32), 0))


def test_napari_split_dataset_reader(written: Path, support: Path, tmp_path: Path) -> None:
    (tmp_path / "not_a_dataset").mkdir()
    (tmp_path / "not_a_dataset" / "notes.txt").write_text("not a dataset")
    proc = run_thirdparty_checked(
        NAPARI,
        tmp_path,
        written / "movie",
        written / "stack",
        tmp_path / "not_a_dataset",
        pythonpath=[support],
    )
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    read = {p.stem: np.load(p) for p in tmp_path.glob("*.npy")}
    assert found["not_a_dataset"] is None
    # 4-D: the dataset itself is the layer's data (read lazily by napari), with contrast limits
    # from frames 2 to 6.
    movie = found["movie"]
    assert movie["is_split_dataset"], movie
    assert _is_ours(movie), movie
    assert movie["shape"] == list(MOVIE.shape)
    assert movie["layer_type"] == "image"
    limits = [np.percentile(MOVIE[2:7], 0.1), np.percentile(MOVIE[2:7], 99.9)]
    assert_allclose(movie["kwargs"]["contrast_limits"], limits, rtol=1e-12)
    assert_array_equal(read["movie"], MOVIE)
    assert_array_equal(read["movie_plane"], MOVIE[5, 1])
    # 3-D: read whole, as an ndarray.
    stack = found["stack"]
    assert stack["class"] == "numpy.ndarray", stack
    assert stack["kwargs"] == {}, stack
    assert_array_equal(read["stack"], STACK)


def test_load_2p(tmp_path: Path, support: Path) -> None:
    """Two tif files of 12 frames per plane, 3 planes, named in plane order."""
    tifs = tmp_path / "tifs"
    tifs.mkdir()
    for plane, half in itertools.product(range(3), range(2)):
        frames = MOVIE[half * 12 : (half + 1) * 12, plane]
        tifffile.imwrite(tifs / f"scan_{plane * 2 + half:02d}.tif", frames)
    dest = tmp_path / "dest"
    dest.mkdir()
    proc = run_thirdparty_checked(LOAD_2P, tifs, dest, pythonpath=[support])
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert _is_ours(found), found
    assert found["shape"] == list(MOVIE.shape), found
    # fimpy's StackSaver wrote the blocks (files 000.h5 ..., with their "files" list in the
    # metadata) and the metadata from our Blocks; our SplitDataset read them back.
    assert sorted(os.listdir(dest / "original")) == [
        "000.h5",
        "001.h5",
        "002.h5",
        "stack_metadata.json",
    ]
    _assert_read(dest / "original", MOVIE)
    assert_array_equal(np.load(dest / "loaded.npy"), MOVIE)
