"""``splitds info`` on experiment folders, and the physical metadata it shows for a dataset.

Datasets are the committed fixtures (written as sashimi, fimpy and brunoise write them) or plain
h5py + json; expected values are the ones those files declare.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from splitds_dask import NotASplitDatasetError, SplitDataset
from tests.helpers.cli import assert_one_line_error, run_main

LEGACY = Path(__file__).parent / "fixtures" / "legacy"


def _copy(fixture: str, target: Path) -> Path:
    shutil.copytree(LEGACY / fixture, target)
    return target


def _fields(text: str) -> dict[str, str]:
    return {line[:13].strip(): line[14:] for line in text.splitlines()}


@pytest.fixture
def fimpy_experiment(tmp_path: Path) -> Path:
    exp = tmp_path / "exp"
    _copy("fimpy_stacksaver/original", exp / "original")
    _copy("fimpy_aligned/aligned", exp / "aligned")
    (exp / "broken").mkdir()
    (exp / "broken" / "stack_metadata.json").write_text("{not json")
    return exp


def test_info_lists_the_datasets_of_an_experiment(fimpy_experiment: Path) -> None:
    exp = fimpy_experiment
    run = run_main("info", str(exp))
    assert run.code == 0, run
    assert run.err == ""
    lines = run.out.splitlines()
    assert lines[0] == f"{exp} is a folder holding 2 split datasets:"
    assert lines[1] == "  aligned   (8, 3, 12, 10), blocks (3, 3, 12, 10)"
    assert lines[2] == "  original  (9, 2, 12, 10), blocks (4, 1, 12, 10)"
    assert lines[3].startswith(f"  broken    unreadable: {exp / 'broken' / 'stack_metadata.json'}")
    assert lines[4] == f"describe one: splitds info {exp / 'aligned'}"


def test_info_json_of_an_experiment(fimpy_experiment: Path) -> None:
    exp = fimpy_experiment
    run = run_main("info", str(exp), "--json")
    assert run.code == 0, run
    info = json.loads(run.out)
    assert info["kind"] == "folder"
    assert info["path"] == str(exp)
    assert info["datasets"] == [
        {
            "name": "aligned",
            "path": str(exp / "aligned"),
            "shape": [8, 3, 12, 10],
            "block_shape": [3, 3, 12, 10],
        },
        {
            "name": "original",
            "path": str(exp / "original"),
            "shape": [9, 2, 12, 10],
            "block_shape": [4, 1, 12, 10],
        },
    ]
    assert [u["name"] for u in info["unreadable"]] == ["broken"]
    assert str(exp / "broken" / "stack_metadata.json") in info["unreadable"][0]["message"]
    assert info["channels"] is None
    assert info["complete"] is True


@pytest.mark.parametrize("where", ["exp", "exp/original"])
def test_info_on_a_brunoise_two_channel_run(tmp_path: Path, where: str) -> None:
    _copy("brunoise_2ch", tmp_path / "exp")
    run = run_main("info", str(tmp_path / where), "--json")
    assert run.code == 0, run
    info = json.loads(run.out)
    prefix = "original/" if where == "exp" else ""
    assert [(d["name"], d["shape"]) for d in info["datasets"]] == [
        (f"{prefix}green", [6, 3, 12, 10]),
        (f"{prefix}red", [6, 3, 12, 10]),
    ]
    assert info["channels"] == [f"{prefix}green", f"{prefix}red"]
    text = run_main("info", str(tmp_path / where))
    assert f"two-channel run: {prefix}green, {prefix}red" in text.out.splitlines()


def test_info_shows_sashimi_voxel_size(tmp_path: Path) -> None:
    """sashimi's voxel_size is (inter-plane, y, x) in micrometres; t has no known step."""
    ds = _copy("sashimi_2024/original", tmp_path / "original")
    run = run_main("info", str(ds))
    assert run.code == 0, run
    fields = _fields(run.out)
    assert fields["shape"] == "(8, 3, 12, 10) (tzyx)"
    assert fields["scale"] == "t 1, z 7 micrometer, y 0.6 micrometer, x 0.6 micrometer"
    assert fields["time step"] == "unknown (the t axis has no time unit)"
    assert "resolution" not in fields
    info = json.loads(run_main("info", str(ds), "--json").out)
    assert info["kind"] == "dataset"
    assert info["axes"] == ["t", "z", "y", "x"]
    assert info["axis_order"] == "tzyx"
    assert info["scale"] == [1.0, 7.0, 0.6, 0.6]
    assert info["units"] == [None, "micrometer", "micrometer", "micrometer"]
    assert info["time_step"] is None


def _dataset_with(folder: Path, extra: dict) -> Path:
    folder.mkdir()
    with h5py.File(folder / "0000.h5", "w") as f:
        f["stack"] = np.zeros((2, 3, 4), dtype="u1")
    meta = {"shape_full": [2, 3, 4], "shape_block": [2, 3, 4], **extra}
    (folder / "stack_metadata.json").write_text(json.dumps(meta))
    return folder


@pytest.mark.parametrize(
    ("extra", "shape", "scale", "time_step", "json_step"),
    [
        (
            {"axes": ["t", "y", "x"], "scale": [0.25, 0.5, 0.5], "units": ["second", "um", "um"]},
            "(2, 3, 4) (tyx)",
            "t 0.25 second, y 0.5 um, x 0.5 um",
            "0.25 s (4 per second)",
            0.25,
        ),
        (
            {"axes": ["t", "y", "x"], "scale": [200, 1, 1], "units": ["ms", None, None]},
            "(2, 3, 4) (tyx)",
            "t 200 ms, y 1, x 1",
            "0.2 s (5 per second)",
            0.2,
        ),
        (
            {"axes": ["z", "y", "x"], "resolution": [2, 1, 1]},
            "(2, 3, 4) (zyx)",
            "z 2, y 1, x 1",
            None,
            None,
        ),
        (
            {"axes": ["plane", "row", "col"]},
            "(2, 3, 4) (plane, row, col)",
            "plane 1, row 1, col 1",
            None,
            None,
        ),
    ],
)
def test_info_shows_axes_scale_and_time_step(
    tmp_path: Path, extra: dict, shape: str, scale: str, time_step: str | None, json_step
) -> None:
    ds = _dataset_with(tmp_path / "ds", extra)
    run = run_main("info", str(ds))
    assert run.code == 0, run
    fields = _fields(run.out)
    assert fields["shape"] == shape
    assert fields["scale"] == scale
    assert fields.get("time step") == time_step
    info = json.loads(run_main("info", str(ds), "--json").out)
    assert info["axes"] == extra["axes"]
    if json_step is None:
        assert info["time_step"] is None
    else:
        assert info["time_step"] == pytest.approx(json_step)
    assert info["axis_order"] == ("".join(extra["axes"]) if len(extra["axes"][0]) == 1 else None)


def test_info_takes_no_scheduler(tmp_path: Path) -> None:
    """info computes nothing: a --scheduler would be silently ignored, so it is refused."""
    ds = _dataset_with(tmp_path / "ds", {})
    assert "--scheduler" not in run_main("info", "--help").out
    assert_one_line_error(run_main("info", str(ds), "--scheduler", "sync"), 2, "--scheduler")


def test_info_on_a_folder_without_datasets_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.txt").write_text("")
    assert_one_line_error(run_main("info", str(tmp_path)), 1, str(tmp_path), "not a split dataset")


def test_info_says_when_the_search_stopped_early(tmp_path: Path) -> None:
    _dataset_with(tmp_path / "original", {})
    (tmp_path / "a" / "b" / "c" / "d").mkdir(parents=True)  # deeper than 3 folders
    run = run_main("info", str(tmp_path))
    assert run.code == 0, run
    assert "(the search stopped early: it looks 3 folders deep at most" in run.out
    assert json.loads(run_main("info", str(tmp_path), "--json").out)["complete"] is False


def test_a_dataset_that_fails_to_open_is_not_listed_as_holding_itself(tmp_path: Path) -> None:
    # A far-out block number makes the dataset itself fail to open: the error is that one, not
    # "a folder holding 1 split dataset: ." (the folder's own metadata found by the search).
    root = _copy("fimpy_stacksaver/original", tmp_path / "original")
    shutil.copy(root / "000.h5", root / "999999999999.h5")
    assert_one_line_error(run_main("info", str(root)), 1, "999999999999.h5")
    assert_one_line_error(run_main("info", str(root), "--json"), 1, "999999999999.h5")
    with pytest.raises(NotASplitDatasetError, match=r"999999999999\.h5") as caught:
        SplitDataset(root)
    assert "holds" not in str(caught.value)
