"""dask's opt-in array-expr mode ("query planning") must not break reading or writing.

The mode is fixed when ``dask.array`` is first imported, so the check runs in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.timeouts import TIMEOUT

pytestmark = [pytest.mark.subprocess]

_SCRIPT = r"""
import sys
import numpy as np
import dask.array as da
import splitds_dask as sd

assert da.array_expr_enabled()
root = sys.argv[1]
a = np.random.default_rng(0).integers(0, 4000, (9, 5, 6, 7)).astype("uint16")
ds = sd.to_split_dataset(a, root + "/a", (2, 2))
np.testing.assert_array_equal(ds[...], a)
x = ds.to_dask()
np.testing.assert_array_equal(x[3, 1].compute(), a[3, 1])
# A slice becomes a read of just that window: one task, no slicing task after a whole read.
sliced = x[3, 1, 2:4, ::3]
tasks = dict(sliced.optimize().__dask_graph__())
assert len(tasks) == 1 and all(k[0].startswith("splitds-") for k in tasks), tasks
np.testing.assert_array_equal(sliced.compute(), a[3, 1, 2:4, ::3])
np.testing.assert_allclose(x.mean(axis=0).compute(), a.mean(axis=0))
b = sd.to_split_dataset(x, root + "/b", (4,), compute=False).compute()
np.testing.assert_array_equal(b[...], a)
assert b.files.shape == (3, 1, 1, 1)
print("ok")
"""


def test_read_and_write_with_array_expr_enabled(tmp_path: Path) -> None:
    env = dict(os.environ, DASK_ARRAY__QUERY_PLANNING="True")
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


# Each dask behaviour of array-expr mode that the package works around, observed in a subprocess
# in that mode, with the workaround's answer next to numpy's. A behaviour dask changes makes its
# case fail: the workaround (in splitds_dask._daskmodes, or the test named) can then go.
_OBSERVE = r"""
import json, sys
import numpy as np
import dask.array as da
from splitds_dask import _daskmodes as m

assert da.array_expr_enabled()
a = np.arange(60, dtype="uint16").reshape(6, 10) + 65500
x = da.from_array(a, chunks=(2, 5))
seen = {}


def raises(f):
    try:
        f()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


seen["store"] = raises(lambda: da.store(x, np.empty(a.shape, a.dtype)))
out = np.zeros(a.shape, a.dtype)
m.store_chunks(x, out).compute()
seen["store_chunks"] = bool((out == a).all())
seen["from_zarr"] = raises(lambda: da.from_zarr("nowhere.zarr"))
seen["has_nbytes"] = hasattr(x, "nbytes")
seen["array_nbytes"] = m.array_nbytes(x) == a.nbytes
seen["asarray_dtype"] = str(np.asarray(x).dtype)
seen["to_numpy"] = bool((m.to_numpy(x) == a).all())
seen["convertible"] = bool((np.asarray(m.numpy_convertible(x)[2:4]) == a[2:4]).all())
seen["std"] = raises(lambda: x.std(axis=0))
seen["our_std"] = bool(np.allclose(m.std(x, 0).compute(), a.std(axis=0), rtol=1e-12))
seen["uint16_times_2"] = str((x * 2).dtype)
seen["fancy"] = raises(lambda: x[:, [3, 1]])


def fails_on_meta(block, block_info=None):
    return block + np.uint8(block_info[0]["chunk-location"][0])


seen["map_blocks_dtype"] = repr(
    da.zeros((4,), dtype=np.uint8, chunks=2).map_blocks(fails_on_meta, dtype=np.uint8).dtype
)
seen["from_array_name"] = da.from_array(a, chunks=5, name="mine").name.split("-")[0]
json.dump(seen, sys.stdout)
"""

_EXPECTED = {
    # da.store: _daskmodes.store_chunks (writer, convert, benchmarks)
    "store": "NotImplementedError: Function store is not implemented for dask-expr.",
    "store_chunks": True,
    # da.from_zarr and to_zarr: written out in benchmarks/_workloads.py
    "from_zarr": "NotImplementedError: Function from_zarr is not implemented for dask-expr.",
    # Array.nbytes: _daskmodes.array_nbytes (demo, convert)
    "has_nbytes": False,
    "array_nbytes": True,
    # no __array__: _daskmodes.to_numpy (compat API, stream writer, contrast limits) and
    # numpy_convertible (the napari layer); xarray's .values: test_xarray computes first
    "asarray_dtype": "object",
    "to_numpy": True,
    "convertible": True,
    # std without dtype asks np.iscomplexobj: _daskmodes.std (splitds project --stat std)
    "std": "NotImplementedError: ",
    "our_std": True,
    # value-based promotion: tests multiply by numpy scalars (test_writer, test_distributed)
    "uint16_times_2": "int64",
    # index arrays crash inside dask: test_indexing, test_xarray
    "fancy": "AttributeError: 'Shuffle' object has no attribute '_token'",
    # dtype as given when the function fails on the meta: the writer takes np.dtype() of it
    "map_blocks_dtype": "<class 'numpy.uint8'>",
    # from_array ignores name=: test_graph expects fromarray- names in that mode
    "from_array_name": "fromarray",
}


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    env = dict(os.environ, DASK_ARRAY__QUERY_PLANNING="True")
    proc = subprocess.run(
        [sys.executable, "-c", _OBSERVE],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path_factory.mktemp("observe"),
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("case", sorted(_EXPECTED))
def test_dask_array_expr_behaviour_worked_around(observed: dict, case: str) -> None:
    assert observed[case] == _EXPECTED[case]
