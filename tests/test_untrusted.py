"""Untrusted datasets: metadata pointing outside the folder is refused, and fuzzed metadata and
fuzzed block files only ever raise the package's errors (pickles: see test_security.py).

``SPLITDS_FUZZ_EXAMPLES`` sets the number of hypothesis inputs per fuzz test (default 300); run
with ``-s`` to see how many were tried.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import splitds_dask as sd
from splitds_dask._format.metadata import parse_metadata

EXAMPLES = int(os.environ.get("SPLITDS_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TRIED: dict[str, int] = {}


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    for name, count in TRIED.items():
        print(f"\n{name}: {count} inputs tried")


@pytest.mark.parametrize(
    "entry",
    ["../x.h5", "/etc/passwd", "..\\x.h5", "C:\\data\\x.h5", "a/../../x.h5", "~/x.h5", "", 5],
)
def test_files_entries_outside_the_folder_are_refused(tmp_path: Path, write_plain, entry) -> None:
    data = np.zeros((4, 3), np.uint8)
    meta = {"shape_full": [4, 3], "shape_block": [2, 3], "files": ["0000.h5", entry]}
    write_plain(tmp_path / "d", data, (2,), metadata=meta)
    with pytest.raises(sd.MetadataError, match="'files'"):
        sd.SplitDataset(tmp_path / "d")


def test_plain_files_entries_are_accepted(tmp_path: Path, write_plain) -> None:
    meta = {"shape_full": [4, 3], "shape_block": [2, 3], "files": ["0000.h5", "0001.h5"]}
    write_plain(tmp_path / "d", np.ones((4, 3), np.uint8), (2,), metadata=meta)
    assert sd.SplitDataset(tmp_path / "d")[...].sum() == 12


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=10),
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_SHAPES = st.lists(st.one_of(st.integers(-3, 2**64), st.none(), _SCALARS), max_size=6)
_KEYS = ("shape_full", "shape_block", "padding", "resolution", "axis_order", "files", "crop")
_METADATA = st.one_of(
    _JSON,
    st.fixed_dictionaries({}, optional={k: st.one_of(_SHAPES, _JSON) for k in _KEYS}),
)


@pytest.mark.slow
@FUZZ
@given(raw=_METADATA)
def test_fuzzed_metadata_is_parsed_or_refused(raw) -> None:
    TRIED["metadata parser"] = TRIED.get("metadata parser", 0) + 1
    try:
        parsed = parse_metadata(raw)
    except sd.MetadataError:
        return
    assert all(isinstance(n, int) and n >= 0 for n in parsed.shape)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz") / "d"
    sd.to_split_dataset(np.arange(6 * 3 * 5, dtype=np.uint16).reshape(6, 3, 5), folder, 2)
    return folder


def _open_and_read(folder: Path) -> None:
    """Open, read and verify: the package's errors only (a crash fails the whole run)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sd.IncompleteDatasetWarning)
        try:
            ds = sd.SplitDataset(folder)
            out = ds[...]
            assert out.shape == ds.shape
        except sd.SplitDatasetError:
            pass
        assert isinstance(sd.verify(folder), list)


@pytest.mark.slow
@FUZZ
@given(text=st.one_of(_METADATA.map(json.dumps), st.binary(max_size=200).map(bytes.hex)))
def test_fuzzed_metadata_file(small_dataset: Path, text: str) -> None:
    TRIED["metadata file"] = TRIED.get("metadata file", 0) + 1
    meta = small_dataset / "stack_metadata.json"
    original = meta.read_bytes()
    try:
        meta.write_text(text)
        _open_and_read(small_dataset)
    finally:
        meta.write_bytes(original)


@pytest.mark.slow
@FUZZ
@given(
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=8),
    keep=st.one_of(st.none(), st.floats(0, 1)),
    which=st.sampled_from(["0000.h5", "0002.h5"]),
)
def test_fuzzed_block_file(small_dataset: Path, flips, keep, which: str) -> None:
    TRIED["block file"] = TRIED.get("block file", 0) + 1
    block = small_dataset / which
    original = block.read_bytes()
    raw = bytearray(original)
    for where, value in flips:
        raw[int(where * len(raw))] = value
    if keep is not None:
        raw = raw[: int(keep * len(raw))]
    try:
        block.write_bytes(bytes(raw))
        _open_and_read(small_dataset)
    finally:
        block.write_bytes(original)
