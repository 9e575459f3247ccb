"""The synthetic calcium-imaging movie."""

from __future__ import annotations

import numpy as np

from splitds_dask._synthetic import synthetic_movie


def test_synthetic_movie_does_not_depend_on_chunking() -> None:
    shape = (3, 40, 48)
    a = synthetic_movie(70, frame_shape=shape, block_frames=7, seed=3)
    b = synthetic_movie(70, frame_shape=shape, block_frames=64, seed=3)
    assert a.chunks[0] == (7,) * 10
    assert b.chunks[0] == (64, 6)
    assert a.dtype == np.uint16
    assert a.shape == (70, *shape)
    x = a.compute(scheduler="threads")
    np.testing.assert_array_equal(x, b.compute(scheduler="sync"))
    assert not np.array_equal(x, synthetic_movie(70, frame_shape=shape, seed=4).compute())
    # Cells flash: somewhere the signal varies far more over time than shot noise alone would.
    excess = x.astype(float).var(axis=0) / np.maximum(x.mean(axis=0) - 100, 1)
    assert excess.max() > 10
