"""The original ``SplitDataset`` was a ``Blocks``: its geometry API answers as split_dataset 0.4.4.

The same extraction runs here and in the original's cached venv (tests/helpers/oldpkg.py) on
datasets written as the original and fimpy write them (tests/fixtures/legacy).
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest

from splitds_dask import SplitDataset
from tests.helpers.oldpkg import JSONABLE, run_old_checked

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
FIXTURES = ["s2sd_3d", "s2sd_4d", "fimpy_aligned/aligned", "fimpy_stacksaver/original"]

EXTRACT = (
    JSONABLE
    + r"""

def extract(ds):
    n = int(np.prod(ds.block_starts.shape[:-1]))
    mid = [int(s) // 2 for s in ds.shape]
    out = {
        "crop": _j(ds.crop),
        "starts": _j(ds.starts),
        "dim_split": _j(ds.dim_split),
        "shape_cropped": _j(ds.shape_cropped),
        "n_dims": int(ds.n_dims),
        "l2c": [_j(ds.linear_to_cartesian(i)) for i in range(n)],
        "c2l": [int(ds.cartesian_to_linear(ds.linear_to_cartesian(i))) for i in range(n)],
        "take": _j(ds.blocks_to_take(tuple([0] * len(mid)), tuple(mid))),
        "centres": _j(ds.centres()),
        "block_to_slices": _j(ds.block_to_slices(((0, 2), (1, 3)))),
        "serialize": _j(ds.serialize()),
        "drop": _j(ds.drop_dim(0).serialize()),
    }
    return out
"""
)

OLD_RUNNER = (
    "import json, sys, warnings\n"
    "warnings.simplefilter('ignore')\n"
    "from split_dataset import SplitDataset\n"
    "ns = {}\n"
    "exec(open(sys.argv[1]).read(), ns)\n"
    "print(json.dumps([ns['extract'](SplitDataset(p)) for p in sys.argv[2:]]))\n"
)

_NS: dict = {}
exec(EXTRACT, _NS)  # noqa: S102  (our own constant: the same code runs in the old venv)


@pytest.mark.subprocess
def test_blocks_api_of_a_dataset_as_the_original(tmp_path: Path) -> None:
    paths = [shutil.copytree(LEGACY / name, tmp_path / name.replace("/", "_")) for name in FIXTURES]
    (tmp_path / "extract.py").write_text(EXTRACT)
    proc = run_old_checked(OLD_RUNNER, tmp_path / "extract.py", *paths)
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, path, old in zip(FIXTURES, paths, theirs, strict=True):
        ours = json.loads(json.dumps(_NS["extract"](SplitDataset(path))))
        assert ours == old, name


def test_blocks_api_survives_pickling(tmp_path: Path) -> None:
    """fimpy sends datasets to joblib workers, which call these methods."""
    path = shutil.copytree(LEGACY / "s2sd_3d", tmp_path / "ds")
    ds = pickle.loads(pickle.dumps(SplitDataset(path)))
    assert ds.crop == ((0, 0), (0, 0), (0, 0))
    assert ds.dim_split == [0, 1, 2]
    assert ds.linear_to_cartesian(5) == (0, 1, 2)  # grid (2, 3, 3), C order
    assert ds.cartesian_to_linear((1, 2, 2)) == 17
