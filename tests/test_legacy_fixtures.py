"""Every on-disk variant found in the wild, committed under ``fixtures/legacy`` (see its README),
opens lazily and reads back exactly the array it was made from: through ``ds[...]``, through the
dask array, and block by block.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

import splitds_dask as sd

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
MANIFEST = json.loads((LEGACY / "manifest.json").read_text())
READABLE = [case for case in MANIFEST if case["expected"] is not None]


def _open(case: dict) -> sd.SplitDataset:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = sd.SplitDataset(LEGACY / case["path"], prefix=case["prefix"])
    incomplete = [w for w in caught if issubclass(w.category, sd.IncompleteDatasetWarning)]
    assert bool(incomplete) == case["warns"], [str(w.message) for w in caught]
    if incomplete:
        message = str(incomplete[0].message)
        assert str(tuple(case["declared_shape_full"])) in message
        assert str(tuple(case["shape"])) in message
    return ds


def test_manifest_covers_every_variant() -> None:
    assert len(MANIFEST) >= 40
    assert all((LEGACY / case["path"]).is_dir() for case in MANIFEST)


@pytest.mark.parametrize("case", READABLE, ids=[c["name"] for c in READABLE])
def test_variant_reads_back_exactly(case: dict) -> None:
    expected = np.load(LEGACY / case["expected"])
    ds = _open(case)
    assert ds.shape == tuple(case["shape"]) == expected.shape
    assert ds.dtype == np.dtype(case["dtype"]) == expected.dtype
    np.testing.assert_array_equal(ds[...], expected)
    np.testing.assert_array_equal(ds.to_dask().compute(scheduler="sync"), expected)
    # Block by block, through the geometry the old API exposes.
    for index, slices in ds.slices():
        np.testing.assert_array_equal(ds[slices], expected[slices], err_msg=str(index))


@pytest.mark.parametrize("case", READABLE, ids=[c["name"] for c in READABLE])
def test_opening_never_writes_into_the_folder(case: dict) -> None:
    folder = LEGACY / case["path"]
    before = {e.name: e.stat().st_mtime_ns for e in os.scandir(folder)}
    ds = _open(case)
    ds[(0,) * ds.ndim]
    assert {e.name: e.stat().st_mtime_ns for e in os.scandir(folder)} == before


def test_prefixed_names_open_with_and_without_prefix() -> None:
    case = next(c for c in MANIFEST if c["name"] == "prefixed_names")
    expected = np.load(LEGACY / case["expected"])
    for prefix in ("stack", None):
        ds = sd.SplitDataset(LEGACY / case["path"], prefix=prefix)
        np.testing.assert_array_equal(ds[...], expected)


def test_stray_numbered_h5_is_not_taken_for_a_block() -> None:
    case = next(c for c in MANIFEST if c["name"] == "fimpy_aligned_stray_h5")
    ds = sd.SplitDataset(LEGACY / case["path"])
    assert all("shifts" not in p.name for p in ds.files.flat)


def test_traces_dataset_opens_lazily_and_reading_names_the_file() -> None:
    case = next(c for c in MANIFEST if c["name"] == "fimpy_traces")
    ds = sd.SplitDataset(LEGACY / case["path"])
    assert ds.shape == tuple(case["declared_shape_full"])
    assert ds.files.size > 0
    with pytest.raises(sd.BlockError, match=r"0*\.h5"):
        ds[0]
