"""Shared fixtures: random arrays and split datasets written *independently* of the package.

``write_plain`` writes a dataset with nothing but h5py, json and brute-force block arithmetic
(no code from ``splitds_dask``), so that a bug in the package's writer or geometry cannot hide
the same bug in its reader.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Sequence
from itertools import product
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401 - registers the Blosc filter for files written here
import numpy as np
import pytest

pytest_plugins = ["tests.helpers.hang_guard", "tests.helpers.server_fixtures"]

# Scripts for the old package's virtualenv (they import split_dataset and flammkuchen), run there
# (check_legacy_with_oldpkg.py by test_oldpkg_env): never imported here, not for --doctest-modules.
collect_ignore = ["fixtures/make_legacy_fixtures.py", "fixtures/check_legacy_with_oldpkg.py"]


# The fixtures of tests/helpers/server_fixtures.py: servers on 127.0.0.1 (the ``network`` marker).
_SERVER_FIXTURES = frozenset({"s3_server", "s3_bucket", "http_server", "serve_http"})

# What a test calls to use the old package's virtualenv (tests/helpers/oldpkg.py) or the
# third-party one (tests/helpers/thirdparty.py), which are built from the package index on first
# use.
_OLDPKG_HELPERS = frozenset(
    {"old_python", "old_venv_dir", "run_old", "run_old_checked"}
    | {"thirdparty_python", "thirdparty_venv_dir", "run_thirdparty", "run_thirdparty_checked"}
)


def _calls_oldpkg(function: Any, seen: set[int] | None = None) -> bool:
    """Whether ``function``, or a function of the tests it names (followed through the names its
    code uses, its nested functions included), calls one of the old-package helpers."""
    seen = set() if seen is None else seen
    code = getattr(function, "__code__", None)
    if code is None or id(code) in seen:
        return False
    seen.add(id(code))
    namespace = getattr(function, "__globals__", {})
    codes = [code]
    while codes:
        current = codes.pop()
        if _OLDPKG_HELPERS & set(current.co_names):
            return True
        codes += [c for c in current.co_consts if hasattr(c, "co_names") and id(c) not in seen]
        seen.update(id(c) for c in current.co_consts if hasattr(c, "co_names"))
        for name in current.co_names:
            value = namespace.get(name)
            if getattr(value, "__module__", "").startswith("tests.") and _calls_oldpkg(value, seen):
                return True
    return False


def _uses_oldpkg(item: pytest.Item) -> bool:
    """Whether the test, or any fixture it requests (directly or not), uses the old package."""
    functions = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    for name in getattr(item, "fixturenames", ()):
        for fixturedef in info.name2fixturedefs.get(name, ()) if info else ():
            functions.append(fixturedef.func)
    return any(_calls_oldpkg(f) for f in functions if f is not None)


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selects by the markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers that a test's own fixtures and parameters imply must be on it: the fast tier
    (``-m "not slow and not cluster and not subprocess"``) relies on them.

    ``index`` is added, not required: every test that uses the old package's virtualenv (or the
    third-party one) gets it, so that ``-m "not index"`` leaves out whatever needs the package
    index (offline runs).
    """
    for item in items:
        if _uses_oldpkg(item):
            item.add_marker(pytest.mark.index)
        marks = {mark.name for mark in item.iter_markers()}
        needed = set()
        fixtures = set(getattr(item, "fixturenames", ()))
        if "client" in fixtures:  # a LocalCluster of worker processes
            needed |= {"cluster", "subprocess", "network"}
        if fixtures & _SERVER_FIXTURES:  # the object stores on 127.0.0.1
            needed.add("network")
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("scheduler") == "processes":  # dask's process pool
            needed.add("subprocess")
        if needed - marks:
            raise pytest.UsageError(f"{item.nodeid} lacks the markers {sorted(needed - marks)}")


def _random_array(shape: Sequence[int], dtype: Any, seed: int = 0) -> np.ndarray:
    """Random values of ``dtype`` covering its range (distinct values, so mix-ups show)."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    shape = tuple(shape)
    if dtype == bool:
        return rng.random(shape) > 0.5
    if dtype.kind == "c":
        return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(dtype)
    if dtype.kind == "f":
        return rng.normal(0, 100, size=shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


@pytest.fixture(scope="session")
def random_array() -> Callable[..., np.ndarray]:
    """``random_array(shape, dtype, seed=0)``: a reproducible random array."""
    return _random_array


def _brute_block_ranges(n: int, b: int | None, pad: int) -> list[tuple[int, int]]:
    """File extents ``(start, stop)`` of the blocks of one axis, by enumeration."""
    b = n if b is None else min(b, n)
    if b == 0 or n - pad <= 0:
        return [(0, n)]
    ranges = []
    k = 0
    while k * b < n - pad:
        ranges.append((k * b, min(n, (k + 1) * b + pad)))
        k += 1
    ranges[-1] = (ranges[-1][0], n)
    return ranges


def _write_plain(
    folder: Path | str,
    array: np.ndarray,
    block_shape: Sequence[int | None],
    *,
    padding: Sequence[int] | int = 0,
    key: str | None = None,
    name: str = "{:04d}.h5",
    first: int = 0,
    chunks: bool | tuple | None = None,
    compression: Any = None,
    metadata: dict | None = None,
    metadata_name: str = "stack_metadata.json",
    json_block_shape: Sequence[int | None] | None = None,
) -> list[Path]:
    """Write ``array`` as a split dataset with plain h5py; return the block files in C order.

    ``block_shape`` may be shorter than ``array.ndim`` (trailing axes unsplit) and may hold
    None. ``metadata`` replaces the default json (``shape_full``/``shape_block``/``padding``);
    pass ``metadata={}`` to write no json at all.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shape = array.shape
    blocks = list(block_shape) + [None] * (array.ndim - len(block_shape))
    pads = [padding] * array.ndim if isinstance(padding, int) else list(padding)
    per_axis = [_brute_block_ranges(n, b, p) for n, b, p in zip(shape, blocks, pads, strict=True)]
    key = key or f"stack_{array.ndim}D"
    paths = []
    for i, ranges in enumerate(product(*per_axis)):
        block = array[tuple(slice(a, b) for a, b in ranges)]
        path = folder / name.format(i + first)
        with h5py.File(path, "w") as f:
            kwargs: dict[str, Any] = {}
            if chunks is not None:
                kwargs["chunks"] = chunks
            if compression is not None:
                kwargs.update(
                    compression if isinstance(compression, dict) else {"compression": compression}
                )
            f.create_dataset(key, data=block, **kwargs)
        paths.append(path)
    if metadata is None:
        metadata = {
            "shape_full": list(shape),
            "shape_block": list(json_block_shape if json_block_shape is not None else block_shape),
            "padding": pads,
        }
    if metadata:
        (folder / metadata_name).write_text(json.dumps(metadata))
    return paths


@pytest.fixture(scope="session")
def write_plain() -> Callable[..., list[Path]]:
    """``write_plain(folder, array, block_shape, **options)``: a split dataset via plain h5py."""
    return _write_plain


@pytest.fixture(scope="session")
def n_brute_blocks() -> Callable[..., int]:
    """``n_brute_blocks(shape, block_shape, padding=0)``: number of block files, by enumeration."""

    def count(shape, block_shape, padding=0):
        blocks = list(block_shape) + [None] * (len(shape) - len(block_shape))
        pads = [padding] * len(shape) if isinstance(padding, int) else list(padding)
        return math.prod(
            len(_brute_block_ranges(n, b, p)) for n, b, p in zip(shape, blocks, pads, strict=True)
        )

    return count


@pytest.fixture
def snapshot() -> Callable[[Path], dict[str, tuple[int, int]]]:
    """``snapshot(folder)``: every entry below ``folder`` with its mtime and size."""

    def take(folder: Path) -> dict[str, tuple[int, int]]:
        out = {}
        for p in sorted(Path(folder).rglob("*")):
            st = p.stat()
            out[str(p.relative_to(folder))] = (st.st_mtime_ns, st.st_size)
        return out

    return take


# --- the command-line demo, run once for the CLI and demo tests ---------------------------------


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """``splitds demo`` into a fresh folder, in-process: (folder, its Run)."""
    from tests.helpers.cli import BLOCK_FRAMES, SIZE, run_main

    folder = tmp_path_factory.mktemp("demo")
    run = run_main(
        "demo", str(folder), "--size", SIZE, "--block-frames", str(BLOCK_FRAMES), "--no-progress"
    )
    assert run.code == 0, run
    return folder, run


# --- a real distributed cluster ---------------------------------------------------------------


@pytest.fixture(scope="module")
def client():
    """A ``distributed.Client`` on a LocalCluster of 2 single-threaded worker processes."""
    import os

    import dask
    import distributed

    import splitds_dask as sd

    # Worker processes must import the same splitds_dask as this test run.
    src = os.path.dirname(os.path.dirname(os.path.abspath(sd.__file__)))
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ.PYTHONPATH": path}),
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # a free port: another cluster on this machine may hold 8787
            silence_logs=40,
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        yield client


def _hard_linked_dataset(folder: Path, n: int, *, name: str = "{:04d}.h5") -> np.ndarray:
    """``n`` blocks of shape (1, 4, 3, 2) sharing one file through hard links: a large block
    count made in milliseconds. Returns the block every file holds."""
    block = np.arange(4 * 3 * 2, dtype="u2").reshape(1, 4, 3, 2)
    folder.mkdir(parents=True)
    source = folder / name.format(0)
    with h5py.File(source, "w") as f:
        f.create_dataset("stack_4D", data=block)
    for i in range(1, n):
        if i % 60_000 == 0:  # ext4 allows 65,000 links to one file
            source = folder / name.format(i)
            shutil.copyfile(folder / name.format(0), source)
        else:
            os.link(source, folder / name.format(i))
    (folder / "stack_metadata.json").write_text(
        json.dumps({"shape_full": [n, 4, 3, 2], "shape_block": [1, 4, 3, 2]})
    )
    return block


@pytest.fixture(scope="session")
def hard_linked_dataset() -> Callable[..., np.ndarray]:
    """``hard_linked_dataset(folder, n, name="{:04d}.h5")``: ``n`` one-frame blocks, hard-linked."""
    return _hard_linked_dataset
