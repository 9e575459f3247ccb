"""Set-up for the docstring examples of ``splitds_dask`` (``pytest`` runs them with
``--doctest-modules``; this file is not part of the installed package).

Every example runs in its own empty temporary folder, which holds a small dataset at
``experiment/original``: 30 time points of 4 planes of 64 x 64 uint16, in blocks of 10 time
points, with axes ``tzyx``, so that examples can open, read and write files as a user would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _example_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import splitds_dask as sd

    monkeypatch.chdir(tmp_path)
    movie = (np.arange(30 * 4 * 64 * 64) % 4099).astype(np.uint16).reshape(30, 4, 64, 64)
    sd.to_split_dataset(
        movie,
        "experiment/original",
        (10,),
        axes="tzyx",
        scale=(0.5, 2.0, 0.6, 0.6),
        units=("second", "micrometer", "micrometer", "micrometer"),
    )
