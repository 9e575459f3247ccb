"""dask's opt-in array-expr mode ("query planning") must not break reading or writing.

The mode is fixed when ``dask.array`` is first imported, so the check runs in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
