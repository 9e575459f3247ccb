"""Finding the split datasets of an experiment folder (sashimi, fimpy, brunoise layouts).

The layouts are built in tmp_path from the committed fixtures (files written the way each
program writes them) and from plain h5py; expected shapes are the ones those writers declare.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from splitds_dask._errors import NotASplitDatasetError
from splitds_dask._format import experiments
from splitds_dask._format.experiments import (
    FoundDataset,
    channel_datasets,
    find_datasets,
    survey,
)

LEGACY = Path(__file__).parent / "fixtures" / "legacy"


def _copy(fixture: str, target: Path) -> Path:
    shutil.copytree(LEGACY / fixture, target)
    return target


def _tiny(folder: Path, shape: tuple[int, ...], block: tuple[int, ...]) -> Path:
    """A one-block-per-file dataset written with plain h5py and json."""
    folder.mkdir(parents=True)
    grid = [-(-n // b) for n, b in zip(shape, block, strict=True)]
    for i in range(int(np.prod(grid))):
        with h5py.File(folder / f"{i:04d}.h5", "w") as f:
            f["stack"] = np.zeros(block, dtype="u1")
    (folder / "stack_metadata.json").write_text(
        json.dumps({"shape_full": list(shape), "shape_block": list(block)})
    )
    return folder


def _summary(found: tuple[FoundDataset, ...]) -> list[tuple[str, tuple, tuple]]:
    return [(d.name, d.shape, d.block_shape) for d in found]


def test_sashimi_experiment(tmp_path: Path) -> None:
    _copy("sashimi_2024/original", tmp_path / "exp" / "original")
    found = find_datasets(tmp_path / "exp")
    assert found == (
        FoundDataset(tmp_path / "exp" / "original", "original", (8, 3, 12, 10), (3, 3, 12, 10)),
    )
    assert channel_datasets(tmp_path / "exp") is None


def test_fimpy_experiment(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    _copy("fimpy_stacksaver/original", exp / "original")
    _copy("fimpy_aligned/aligned", exp / "aligned")  # also holds shifts_sobel.h5
    _tiny(exp / "dff", (8, 3, 12, 10), (3, 3, 12, 10))
    _tiny(exp / "anatomy", (3, 12, 10), (1, 12, 10))
    (exp / "notes").mkdir()
    (exp / "notes" / "todo.txt").write_text("")
    assert (exp / "aligned" / "shifts_sobel.h5").is_file()
    assert _summary(find_datasets(exp)) == [
        ("aligned", (8, 3, 12, 10), (3, 3, 12, 10)),
        ("anatomy", (3, 12, 10), (1, 12, 10)),
        ("dff", (8, 3, 12, 10), (3, 3, 12, 10)),
        ("original", (9, 2, 12, 10), (4, 1, 12, 10)),
    ]
    assert channel_datasets(exp) is None


@pytest.mark.parametrize("where", ["exp", "exp/original"])
def test_brunoise_two_channels(tmp_path: Path, where: str) -> None:
    exp = _copy("brunoise_2ch", tmp_path / "exp")  # with time.h5 beside original/
    expected = [
        ("original/green", (6, 3, 12, 10), (6, 1, 12, 10)),
        ("original/red", (6, 3, 12, 10), (6, 1, 12, 10)),
    ]
    assert _summary(find_datasets(exp)) == expected
    channels = channel_datasets(tmp_path / where)
    assert channels is not None
    assert [(c.name, c.path, c.shape) for c in channels] == [
        ("green", exp / "original" / "green", (6, 3, 12, 10)),
        ("red", exp / "original" / "red", (6, 3, 12, 10)),
    ]


@pytest.mark.parametrize("change", ["red_shape", "no_red", "json_in_original"])
def test_not_two_channels(tmp_path: Path, change: str) -> None:
    exp = _copy("brunoise_2ch", tmp_path / "exp")
    red = exp / "original" / "red"
    if change == "red_shape":
        meta = json.loads((red / "stack_metadata.json").read_text())
        meta["shape_full"][0] = 5
        (red / "stack_metadata.json").write_text(json.dumps(meta))
    elif change == "no_red":
        shutil.rmtree(red)
    else:
        (exp / "original" / "stack_metadata.json").write_text(
            json.dumps({"shape_full": [1], "shape_block": [1]})
        )
    assert channel_datasets(exp) is None


def test_folder_that_is_a_dataset(tmp_path: Path) -> None:
    ds = _copy("sashimi_2024/original", tmp_path / "original")
    _tiny(ds / "inner", (2, 2), (1, 2))  # never looked at: inside a dataset
    assert _summary(find_datasets(ds)) == [(".", (8, 3, 12, 10), (3, 3, 12, 10))]
    assert _summary(find_datasets(tmp_path)) == [("original", (8, 3, 12, 10), (3, 3, 12, 10))]


def test_legacy_dataset(tmp_path: Path) -> None:
    _copy("legacy_h5_metadata", tmp_path / "exp" / "original")
    # Numbered .h5 files without the legacy metadata group are no dataset.
    (tmp_path / "exp" / "shifts").mkdir()
    with h5py.File(tmp_path / "exp" / "shifts" / "shifts_2.h5", "w") as f:
        f["shifts"] = np.zeros(3)
    result = survey(tmp_path / "exp")
    assert _summary(result.datasets) == [("original", (7, 12, 10), (3, 12, 10))]
    assert result.unreadable == ()
    assert result.complete


def test_unreadable_metadata_does_not_stop_the_search(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    _tiny(exp / "a", (4, 2), (2, 2))
    (exp / "a" / "stack_metadata.json").write_text("{not json")
    _tiny(exp / "b", (4, 2), (2, 2))
    (exp / "c").mkdir()
    (exp / "c" / "stack_metadata.json").write_text(json.dumps({"shape_full": [3]}))
    assert _summary(find_datasets(exp)) == [("b", (4, 2), (2, 2))]
    result = survey(exp)
    assert [u.name for u in result.unreadable] == ["a", "c"]
    assert str(exp / "a" / "stack_metadata.json") in result.unreadable[0].message
    assert "shape_block" in result.unreadable[1].message


def test_hidden_folders_and_links(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    _tiny(exp / "original", (4, 2), (2, 2))
    _tiny(exp / ".staging" / "original", (4, 2), (2, 2))
    outside = _tiny(tmp_path / "elsewhere" / "ds", (4, 2), (2, 2))
    os.symlink(outside, exp / "outside_link")
    os.symlink(exp, exp / "original_parent_loop")  # inside the folder: looked at once
    (exp / "sub").mkdir()
    os.symlink(exp / "original", exp / "sub" / "same_again")
    result = survey(exp, max_depth=8)
    assert _summary(result.datasets) == [("original", (4, 2), (2, 2))]


def test_depth_bound(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "c" / "d"
    _tiny(deep, (2,), (1,))
    shallow = survey(tmp_path, max_depth=3)
    assert shallow.datasets == ()
    assert not shallow.complete
    deeper = survey(tmp_path, max_depth=4)
    assert _summary(deeper.datasets) == [("a/b/c/d", (2,), (1,))]
    assert deeper.complete


def test_count_limit(tmp_path: Path) -> None:
    for name in "abcde":
        _tiny(tmp_path / name, (2,), (1,))
    assert [d.name for d in find_datasets(tmp_path)] == list("abcde")
    limited = survey(tmp_path, limit=2)
    assert [d.name for d in limited.datasets] == ["a", "b"]
    assert not limited.complete


def test_folder_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A huge tree costs at most MAX_FOLDERS folder listings (counted, not timed)."""
    for i in range(70):
        for j in range(60):
            (tmp_path / f"{i:02d}" / f"{j:02d}").mkdir(parents=True)
    listings = []
    scandir = os.scandir

    def counting(path):  # type: ignore[no-untyped-def]
        listings.append(path)
        return scandir(path)

    monkeypatch.setattr(os, "scandir", counting)
    result = survey(tmp_path)
    assert experiments.MAX_FOLDERS < 70 * 60 + 71  # the tree is larger than the bound
    assert len(listings) <= experiments.MAX_FOLDERS
    assert not result.complete


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_not_a_folder(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "x"
    if kind == "file":
        path.write_text("")
    with pytest.raises(NotASplitDatasetError, match="not a folder"):
        find_datasets(path)
    assert channel_datasets(path) is None


# --- opening a folder that holds datasets names them ---------------------------------------


def _open_with(how: str, path: Path) -> None:
    if how == "SplitDataset":
        from splitds_dask import SplitDataset

        SplitDataset(path)
    else:
        import xarray as xr

        xr.open_dataset(path, engine="splitds")


@pytest.mark.parametrize("how", ["SplitDataset", "xarray"])
def test_opening_an_experiment_names_its_datasets(tmp_path: Path, how: str) -> None:
    exp = tmp_path / "exp"
    _copy("fimpy_stacksaver/original", exp / "original")
    _copy("fimpy_aligned/aligned", exp / "aligned")
    with pytest.raises(NotASplitDatasetError) as caught:
        _open_with(how, exp)
    assert str(caught.value) == (
        f"{exp} is not a split dataset; it holds 2: aligned (8, 3, 12, 10), original (9, 2, 12, 10)"
    )


def test_opening_brunoise_original_names_the_channels(tmp_path: Path) -> None:
    exp = _copy("brunoise_2ch", tmp_path / "exp")
    with pytest.raises(NotASplitDatasetError) as caught:
        _open_with("SplitDataset", exp / "original")
    assert str(caught.value) == (
        f"{exp / 'original'} is not a split dataset; it holds 2: green (6, 3, 12, 10), "
        "red (6, 3, 12, 10)"
    )


def test_the_list_of_datasets_is_capped(tmp_path: Path) -> None:
    for name in "abcdefg":
        _tiny(tmp_path / name, (2,), (1,))
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "stack_metadata.json").write_text("[]")
    # Numbered .h5 files that are no blocks: the error still names the datasets.
    with h5py.File(tmp_path / "shifts_2.h5", "w") as f:
        f["shifts"] = np.zeros(2)
    with pytest.raises(NotASplitDatasetError) as caught:
        _open_with("SplitDataset", tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert message == (
        f"{tmp_path} is not a split dataset; it holds 7: a (2,), b (2,), c (2,), d (2,) and 3 "
        "more; 1 with unreadable metadata: h"
    )


def test_an_empty_folder_is_still_just_not_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    with pytest.raises(NotASplitDatasetError, match=r"not a split dataset \(no \*stack_metadata"):
        _open_with("SplitDataset", tmp_path)


def test_linked_files_count(tmp_path: Path) -> None:
    """A dataset whose metadata and blocks are links to files inside it (a link to a file is
    judged when the dataset is opened, not by the search)."""
    ds = _tiny(tmp_path / "exp" / "original", (4, 2), (2, 2))
    (ds / "stack_metadata.json").rename(ds / "real.json")
    os.symlink(ds / "real.json", ds / "stack_metadata.json")
    assert _summary(find_datasets(tmp_path / "exp")) == [("original", (4, 2), (2, 2))]


def _count_listings(monkeypatch: pytest.MonkeyPatch) -> list:
    listings = []
    scandir = os.scandir

    def counting(path):  # type: ignore[no-untyped-def]
        listings.append(Path(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", counting)
    return listings


def test_block_files_are_not_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dataset with the usual stack_metadata.json is recognised without listing its files."""
    ds = _tiny(tmp_path / "exp" / "original", (3000, 2), (1, 2))
    listings = _count_listings(monkeypatch)
    assert _summary(find_datasets(tmp_path / "exp")) == [("original", (3000, 2), (1, 2))]
    assert ds not in listings
    assert listings == [tmp_path / "exp"]


def test_entry_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Listing stops after MAX_ENTRIES entries in all (a bound made small for the test)."""
    for i in range(30):
        (tmp_path / "big" / f"image_{i:03d}.tif").parent.mkdir(exist_ok=True)
        (tmp_path / "big" / f"image_{i:03d}.tif").write_bytes(b"")
    _tiny(tmp_path / "zz" / "original", (2,), (1,))
    assert survey(tmp_path).complete
    monkeypatch.setattr(experiments, "MAX_ENTRIES", 20)
    cut = survey(tmp_path)
    assert not cut.complete
    assert cut.datasets == ()  # "zz" is listed after "big" exhausted the entries
