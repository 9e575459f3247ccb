"""The TCZYX view of datasets that the bioio plugin reads: numpy's answer for any index, channels
of several datasets one after another, and only the selected elements read."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import splitds_dask as sd
import splitds_dask._reader as reader_module
from splitds_dask._integrations.tczyx import TczyxSource, TczyxView

KEYS = [
    (),
    (Ellipsis,),
    (3,),
    (-1, 0),
    (slice(1, 6, 2), 0, slice(None), 2),
    (slice(None, None, -1),),
    (slice(None), slice(None, None, -1)),  # channels reversed
    (Ellipsis, slice(5, 1, -2)),
    ([4, 0, 4], 1),
    (slice(None), [1, 0], Ellipsis, [2, 2]),  # arrays apart: numpy moves their axis first
    (np.array([True, False, True, False, False, True, False]),),
    (None, 2, None, Ellipsis, 1),
    (slice(2, 2),),  # empty
    (0, 0, 0, 0, 0),  # a scalar
    (Ellipsis, [[0, 1], [3, 2]]),
]


@pytest.fixture(scope="module")
def stacked(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, TczyxView]:
    """Two datasets, ``tzyx`` and ``zyxt`` (stored transposed), as one TCZYX array with C = 2."""
    root = tmp_path_factory.mktemp("tczyx")
    rng = np.random.default_rng(1)
    green = rng.integers(0, 1000, size=(7, 3, 5, 4), dtype=np.uint16)
    red = rng.integers(0, 1000, size=(7, 3, 5, 4), dtype=np.uint16)
    g = sd.to_split_dataset(green, root / "green", block_shape=(3, 2, 5, 4), durable=False)
    r = sd.to_split_dataset(
        np.moveaxis(red, 0, -1),
        root / "red",
        block_shape=(3, 5, 4, 2),
        axes="zyxt",
        durable=False,
    )
    view = TczyxView([TczyxSource(g.reader, "TZYX"), TczyxSource(r.reader, "ZYXT")])
    return np.stack([green, red], axis=1), view


def test_shape_and_chunks(stacked: tuple[np.ndarray, TczyxView]) -> None:
    expected, view = stacked
    assert view.shape == expected.shape == (7, 2, 3, 5, 4)
    assert view.dtype == expected.dtype
    assert view.chunks() == ((3, 3, 1), (1, 1), (2, 1), (5,), (4,))


@pytest.mark.parametrize("key", KEYS, ids=[repr(k) for k in KEYS])
def test_indexing_matches_numpy(stacked: tuple[np.ndarray, TczyxView], key: tuple) -> None:
    expected, view = stacked
    np.testing.assert_array_equal(view[key], expected[key], strict=True)


@pytest.mark.parametrize("key", [(7,), (0, 2), (slice(None), slice(None), 3), (0.5,)])
def test_bad_index_raises_as_numpy_does(stacked: tuple[np.ndarray, TczyxView], key) -> None:
    expected, view = stacked
    with pytest.raises(Exception) as numpy_error:  # noqa: PT011
        expected[key]
    with pytest.raises(type(numpy_error.value)):
        view[key]


def test_pickles_small_and_reads_back(stacked: tuple[np.ndarray, TczyxView]) -> None:
    expected, view = stacked
    blob = pickle.dumps(view)
    assert len(blob) < 1500
    np.testing.assert_array_equal(pickle.loads(blob)[...], expected, strict=True)


@pytest.mark.parametrize(
    ("letters", "shape", "index"),
    [
        ("YX", (6, 5), (None, None, None)),
        ("ZYX", (4, 6, 5), (None, None)),
        ("XYZ", (5, 6, 4), (None, None)),
        ("CTYX", (2, 3, 6, 5), (slice(None),)),
    ],
)
def test_missing_axes_have_length_one(
    tmp_path: Path, letters: str, shape: tuple, index: tuple
) -> None:
    a = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    ds = sd.to_split_dataset(a, tmp_path / "ds", block_shape=2, durable=False)
    view = TczyxView([TczyxSource(ds.reader, letters)])
    order = [letters.index(d) for d in "TCZYX" if d in letters]
    expected = np.transpose(a, order)
    expanded = expected.reshape([a.shape[letters.index(d)] if d in letters else 1 for d in "TCZYX"])
    np.testing.assert_array_equal(view[...], expanded, strict=True)
    np.testing.assert_array_equal(view[:, :, :, 1:3], expanded[:, :, :, 1:3], strict=True)


def test_reads_only_the_selected_elements(
    stacked: tuple[np.ndarray, TczyxView], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected, view = stacked
    elements = []
    lock = threading.Lock()
    original = reader_module.read_block_region

    def counted(*args: Any, **kwargs: Any) -> Any:
        with lock:
            elements.append(kwargs["out"][kwargs["dest"]].size)
        return original(*args, **kwargs)

    monkeypatch.setattr(reader_module, "read_block_region", counted)
    np.testing.assert_array_equal(view[4, 1, 2], expected[4, 1, 2], strict=True)
    assert sum(elements) == 5 * 4  # one plane of the red dataset
    elements.clear()
    np.testing.assert_array_equal(view[:, 0, :, 2, 3], expected[:, 0, :, 2, 3], strict=True)
    assert sum(elements) == 7 * 3


def test_sources_must_agree(tmp_path: Path) -> None:
    a = sd.to_split_dataset(np.zeros((3, 4, 5), np.uint8), tmp_path / "a", durable=False)
    b = sd.to_split_dataset(np.zeros((3, 4, 6), np.uint8), tmp_path / "b", durable=False)
    c = sd.to_split_dataset(np.zeros((3, 4, 5), np.int8), tmp_path / "c", durable=False)
    with pytest.raises(ValueError, match="differ in length"):
        TczyxView([TczyxSource(a.reader, "ZYX"), TczyxSource(b.reader, "ZYX")])
    with pytest.raises(ValueError, match="differ in dtype"):
        TczyxView([TczyxSource(a.reader, "ZYX"), TczyxSource(c.reader, "ZYX")])
    with pytest.raises(ValueError, match="does not name the 3 axes"):
        TczyxView([TczyxSource(a.reader, "TY")])
    with pytest.raises(ValueError, match="does not name the 3 axes"):
        TczyxView([TczyxSource(a.reader, "ZZX")])
    with pytest.raises(ValueError, match="at least one"):
        TczyxView([])
