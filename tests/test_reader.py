"""ReaderWindow: a strided box of a dataset, indexed like numpy, against numpy's own answer."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import splitds_dask as sd
from splitds_dask._reader import ReaderWindow

SHAPE = (11, 4, 7, 5)


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[sd.SplitDataset, np.ndarray]:
    values = np.random.default_rng(1).integers(0, 60000, SHAPE, dtype=np.uint16)
    root = tmp_path_factory.mktemp("window") / "ds"
    return sd.to_split_dataset(values, root, (3, 2, 7, 5)), values


def _entry(n: int) -> st.SearchStrategy:
    forward = st.builds(
        slice,
        st.one_of(st.none(), st.integers(-n - 2, n + 2)),
        st.one_of(st.none(), st.integers(-n - 2, n + 2)),
        st.one_of(st.none(), st.integers(1, 4)),
    )
    return st.one_of(st.integers(-n, n - 1), forward)


def _inner(shape: tuple[int, ...]) -> st.SearchStrategy:
    """What dask's getter or a user hands a window: a slice of any step per axis."""
    entries = [
        st.builds(
            slice,
            st.one_of(st.none(), st.integers(-n - 1, n + 1)),
            st.one_of(st.none(), st.integers(-n - 1, n + 1)),
            st.one_of(st.none(), st.integers(-3, 3).filter(bool)),
        )
        for n in shape
    ]
    return st.tuples(*entries) if shape else st.just(())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_window_reads_what_numpy_selects(stored, data) -> None:
    ds, values = stored
    index = data.draw(st.tuples(*(_entry(n) for n in SHAPE)))
    window = ReaderWindow.of(ds.reader, index)
    assert window is not None
    expected = values[index]
    assert window.shape == expected.shape
    inner = data.draw(_inner(window.shape))
    np.testing.assert_array_equal(window[inner], expected[inner])


@pytest.mark.parametrize(
    "index",
    [(slice(None, None, -1),), (slice(0, 3), 1, 2), (np.array([1, 2]),), (None,), (True,), (99,)],
    ids=["backwards", "too-few-axes", "array", "newaxis", "bool", "out-of-range"],
)
def test_only_integers_and_forward_slices_make_a_window(stored, index) -> None:
    ds, _ = stored
    assert ReaderWindow.of(ds.reader, index) is None


def test_a_window_pickles_small_and_reads_the_same(stored) -> None:
    ds, values = stored
    window = ReaderWindow.of(ds.reader, (slice(2, 10, 3), 1, slice(None), 4))
    assert window is not None
    copy = pickle.loads(pickle.dumps(window))
    np.testing.assert_array_equal(copy[:, 2:5], values[2:10:3, 1, :, 4][:, 2:5])
    assert len(pickle.dumps(window)) < len(pickle.dumps(ds.reader)) + 200
