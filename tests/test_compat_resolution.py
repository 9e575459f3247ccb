"""``SplitDataset.resolution`` as split_dataset 0.4.4 reports it, and writers that take it back.

fimpy passes ``resolution=dataset.resolution`` to the datasets it writes, so the value (and what
it becomes in the written json) must be the original's; the spacing per axis is ``scale``. The
original package runs in its cached venv (tests/helpers/oldpkg.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from splitds_dask import EmptySplitDataset, SplitDataset, SplitDatasetWriter, to_split_dataset
from tests.helpers.oldpkg import run_old_checked

LEGACY = Path(__file__).parent / "fixtures" / "legacy"

OLD_RESOLUTIONS = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
from split_dataset import SplitDataset
out = []
for path in sys.argv[1:]:
    r = SplitDataset(path).resolution
    out.append({"values": list(r), "types": [type(v).__name__ for v in r]})
print(json.dumps(out))
"""


def _plain(folder: Path, shape: tuple[int, ...], extra: dict) -> Path:
    folder.mkdir(parents=True)
    with h5py.File(folder / "0000.h5", "w") as f:
        f["stack"] = np.zeros(shape, dtype="u1")
    meta = {"shape_full": list(shape), "shape_block": list(shape), **extra}
    (folder / "stack_metadata.json").write_text(json.dumps(meta))
    return folder


# (folder, what the original's resolution must read, our scale for it)
CASES = {
    "fimpy_stacksaver": ("fimpy_stacksaver/original", [1, 1, 1], (1.0, 1.0, 1.0, 1.0)),
    "sashimi_2024": ("sashimi_2024/original", [1, 1, 1], (1.0, 7.0, 0.6, 0.6)),
    "split_dataset_resolution": ("fimpy_aligned/aligned", [1, 1, 1, 1], (1.0, 1.0, 1.0, 1.0)),
    "float_resolution": ({"resolution": [2.0, 0.5, 0.5]}, [2.0, 0.5, 0.5], (2.0, 0.5, 0.5)),
    "2d_without_key": ({}, [1, 1, 1], (1.0, 1.0)),
}


@pytest.mark.subprocess
def test_resolution_as_the_original(tmp_path: Path) -> None:
    paths = []
    for name, (source, _, _) in CASES.items():
        if isinstance(source, str):
            paths.append(shutil.copytree(LEGACY / source, tmp_path / name))
        else:
            shape = (2, 3) if name.startswith("2d") else (2, 3, 4)
            paths.append(_plain(tmp_path / name, shape, source))
    proc = run_old_checked(OLD_RESOLUTIONS, *paths)
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    for (name, (_, expected, scale)), path, old in zip(CASES.items(), paths, theirs, strict=True):
        assert old["values"] == expected, name  # the table above is the original's answer
        ours = SplitDataset(path).resolution
        assert list(ours) == old["values"], name
        assert [type(v).__name__ for v in ours] == old["types"], name
        assert SplitDataset(path).scale == pytest.approx(scale), name


OLD_FIMPY_OUTPUT = r"""
import sys, warnings
warnings.simplefilter("ignore")
import flammkuchen as fl
from split_dataset import Blocks, EmptySplitDataset, SplitDataset
source = SplitDataset(sys.argv[1])
new = EmptySplitDataset(root=sys.argv[2], name="dff", shape_full=source.shape,
                        shape_block=source.shape_block, resolution=source.resolution)
for i, (_, block) in enumerate(new.slices(as_tuples=True)):
    vid = source[Blocks.block_to_slices(block)]
    fl.save(str(new.root / new.files[i]), dict(stack_4D=vid), compression="blosc")
result = new.finalize()
print(list(result.resolution))
"""


@pytest.mark.subprocess
def test_fimpy_output_metadata_as_the_original(tmp_path: Path) -> None:
    """fimpy's pattern (pipeline/common.py) on a StackSaver folder, which has no resolution."""
    source_path = shutil.copytree(LEGACY / "fimpy_stacksaver" / "original", tmp_path / "src")
    proc = run_old_checked(OLD_FIMPY_OUTPUT, source_path, tmp_path / "old")
    assert proc.stdout.strip().splitlines()[-1] == "[1, 1, 1]"
    source = SplitDataset(source_path)
    new = EmptySplitDataset(
        root=tmp_path / "ours",
        name="dff",
        shape_full=source.shape,
        shape_block=source.shape_block,
        resolution=source.resolution,
    )
    for i, (_, block) in enumerate(new.slices(as_tuples=True)):
        new.save_block_data(i, source[EmptySplitDataset.block_to_slices(block)])
    result = new.finalize()
    ours = (tmp_path / "ours" / "dff" / "stack_metadata.json").read_text()
    assert ours == (tmp_path / "old" / "dff" / "stack_metadata.json").read_text()
    assert '"resolution": [1, 1, 1]' in ours
    assert result.resolution == (1, 1, 1)
    assert result.scale == (1.0, 1.0, 1.0, 1.0)
    np.testing.assert_array_equal(result[...], source[...])


@pytest.mark.parametrize("writer", ["to_split_dataset", "SplitDatasetWriter"])
def test_our_writers_take_the_original_default(tmp_path: Path, writer: str) -> None:
    """``resolution=ds.resolution`` of a 4-D dataset without the key is ``(1, 1, 1)``."""
    source = SplitDataset(LEGACY / "fimpy_stacksaver" / "original")
    assert source.ndim == 4
    movie = source[...]
    target = tmp_path / "copy"
    if writer == "to_split_dataset":
        to_split_dataset(movie, target, (4, 1), resolution=source.resolution)
    else:
        with SplitDatasetWriter(
            target,
            frame_shape=movie.shape[1:],
            dtype=movie.dtype,
            block_length=4,
            resolution=source.resolution,
        ) as out:
            out.append(movie)
    written = json.loads((target / "stack_metadata.json").read_text())
    assert written["resolution"] == [1, 1, 1]
    copy = SplitDataset(target)
    assert copy.resolution == (1, 1, 1)
    assert copy.scale == (1.0, 1.0, 1.0, 1.0)
    np.testing.assert_array_equal(copy[...], movie)


@pytest.mark.parametrize(
    ("options", "scale"),
    [
        ({"resolution": (7.0, 0.6, 0.6)}, (1.0, 7.0, 0.6, 0.6)),
        ({"resolution": (7.0, 0.6, 0.6), "time_step": 0.5}, (0.5, 7.0, 0.6, 0.6)),
        ({"resolution": (0.6, 0.6), "scale": (0.5, 7.0, None, None)}, (0.5, 7.0, 0.6, 0.6)),
    ],
)
def test_a_short_resolution_gives_the_last_axes(
    tmp_path: Path, options: dict, scale: tuple
) -> None:
    data = np.arange(2 * 3 * 4 * 5, dtype=np.uint16).reshape(2, 3, 4, 5)
    ds = to_split_dataset(data, tmp_path / "ds", (1,), **options)
    assert ds.scale == pytest.approx(scale)


def test_a_resolution_longer_than_the_axes_is_refused(tmp_path: Path) -> None:
    data = np.zeros((2, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="resolution"):
        to_split_dataset(data, tmp_path / "ds", (1,), resolution=(1, 1, 1))
    with pytest.raises(ValueError, match="resolution"):
        to_split_dataset(data, tmp_path / "ds", (1,), resolution=(1, 1, 1), axes="yx")
