"""Computing pickled dask arrays in a fresh interpreter: a process that did not open their
dataset, as a distributed worker is (no chunk map, size or sidecar of this process)."""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tests.helpers.cli import package_env
from tests.helpers.timeouts import TIMEOUT

__all__ = ["compute_in_fresh_process"]

# Unpickles the arrays, computes each in turn on the given scheduler, saves them as .npy.
_COMPUTE = """
import pickle, sys
import numpy as np
arrays = pickle.loads(open(sys.argv[1], "rb").read())
for i, x in enumerate(arrays):
    np.save(f"{sys.argv[2]}-{i}.npy", x.compute(scheduler=sys.argv[3]))
"""


def compute_in_fresh_process(
    arrays: Sequence[Any], folder: Path, *, scheduler: str = "threads"
) -> list[np.ndarray]:
    """Compute ``arrays`` (dask arrays, pickled) in a new interpreter, one after the other."""
    folder.mkdir(parents=True, exist_ok=True)
    task = folder / "task.pkl"
    task.write_bytes(pickle.dumps(list(arrays)))
    done = subprocess.run(
        [sys.executable, "-c", _COMPUTE, str(task), str(folder / "out"), scheduler],
        env=package_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [np.load(folder / f"out-{i}.npy") for i in range(len(arrays))]
