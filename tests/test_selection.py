"""``--select`` of ``splitds convert`` and ``splitds project``: parsed without eval, equal to
numpy's basic indexing, read lazily (only the blocks under the selection), and carrying the
physical metadata through (a step scales the spacing, an integer drops the axis)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import splitds_dask as sd
import splitds_dask._reader
from splitds_dask._cli.messages import UsageError
from splitds_dask._cli.selection import parse_selection
from splitds_dask._cli.sources import open_source
from tests.helpers.cli import assert_one_line_error, run_main
from tests.helpers.damage import spoil_chunks

SHAPE = (9, 3, 6, 5)
BLOCK = (2, 3, 6, 5)  # five blocks along t: 0-1, 2-3, 4-5, 6-7, 8


@pytest.fixture(scope="module")
def movie(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    a = np.random.default_rng(5).integers(0, 60000, SHAPE, dtype=np.uint16)
    root = tmp_path_factory.mktemp("selection") / "movie"
    sd.to_split_dataset(
        a,
        root,
        BLOCK,
        axes="tzyx",
        scale=(0.5, 2.0, 0.3, 0.25),
        units=("second", "micrometer", "micrometer", "micrometer"),
    )
    return root, a


# --- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "items"),
    [
        ("5", (5,)),
        ("-1", (-1,)),
        ("0:100, :, ::2", (slice(0, 100), slice(None), slice(None, None, 2))),
        ("::-1", (slice(None, None, -1),)),
        (" 10 : 2 : -3 ", (slice(10, 2, -3),)),
        ("..., 0", (Ellipsis, 0)),
        ("1, ..., ::2", (1, Ellipsis, slice(None, None, 2))),
        ("5,", (5,)),
        ("+3:", (slice(3, None),)),
    ],
)
def test_parse(text: str, items: tuple[object, ...]) -> None:
    assert parse_selection(text).items == items


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("1:2:0", "step cannot be zero"),
        ("a", "'a' is not an integer"),
        ("__import__('os').system('true')", "is not an integer"),
        ("1.5", "'1.5'"),
        ("1;2", "'1;2'"),
        ("..., ...", "at most one ..."),
        ("", "empty selection"),
        ("1:2:3:4", "'1:2:3:4'"),
        ("[1, 2]", "'[1'"),
        ("None", "'None'"),
    ],
)
def test_bad_syntax_is_a_one_line_usage_error(text: str, fragment: str, movie, tmp_path) -> None:
    root, _ = movie
    for command, out in (("convert", "o.npy"), ("project", "p.npy")):
        run = run_main(command, str(root), str(tmp_path / out), "--select", text)
        assert_one_line_error(run, 2, "--select", fragment)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("9", ["index 9 is out of range for axis 0 (t) of length 9"]),
        ("-10", ["index -10", "axis 0 (t)"]),
        (":, :, :, 5", ["index 5", "axis 3 (x) of length 5"]),
        ("4:4", ["selects nothing along axis 0 (t)"]),
        (":, 2:0", ["selects nothing along axis 1 (z)"]),
        ("0, 0, 0, 0, 0", ["names 5 axes", "has 4"]),
    ],
)
def test_a_selection_that_does_not_fit_names_the_axis(text, fragments, movie, tmp_path) -> None:
    root, _ = movie
    for command, out in (("convert", "o"), ("project", "p.npy")):
        run = run_main(command, str(root), str(tmp_path / out), "--select", text)
        assert_one_line_error(run, 2, *fragments)
    assert not any(tmp_path.iterdir())


# --- against numpy ----------------------------------------------------------------------------


def _index_text(item: object) -> str:
    if item is Ellipsis:
        return "..."
    if isinstance(item, slice):
        parts = ["" if v is None else str(v) for v in (item.start, item.stop, item.step)]
        return ":".join(parts) if item.step is not None else ":".join(parts[:2])
    return str(item)


_bound = st.one_of(st.none(), st.integers(-12, 12))
_item = st.one_of(
    st.integers(-10, 10),
    st.builds(slice, _bound, _bound, st.one_of(st.none(), st.integers(-4, 4).filter(bool))),
)


@st.composite
def _selections(draw: st.DrawFn) -> tuple[object, ...]:
    items = draw(st.lists(_item, min_size=0, max_size=4))
    if draw(st.booleans()):
        items.insert(draw(st.integers(0, len(items))), Ellipsis)
    return tuple(items) or (Ellipsis,)


def _numpy_or_none(a: np.ndarray, items: tuple[object, ...]) -> np.ndarray | None:
    """numpy's answer, or None where ours is an error by design (an int beyond its axis,
    an empty selection, more indices than axes)."""
    try:
        want = a[items]
    except IndexError:
        return None
    return None if want.size == 0 else want


@pytest.fixture(scope="module")
def movie_npy(movie) -> Path:
    root, a = movie
    path = root.parent / "movie.npy"
    np.save(path, a)
    return path


@pytest.mark.parametrize("kind", ["split dataset", "npy"])
@settings(max_examples=100, deadline=None)
@given(items=_selections())
def test_selection_equals_numpy_basic_indexing(
    movie, movie_npy, kind: str, items: tuple[object, ...]
) -> None:
    root, a = movie
    text = ", ".join(_index_text(i) for i in items)
    source = open_source(str(root if kind == "split dataset" else movie_npy))
    want = _numpy_or_none(a, items)
    if want is None:
        with pytest.raises(UsageError, match="--select"):
            source.select(parse_selection(text))
        return
    selected = source.select(parse_selection(text))
    assert selected.shape == want.shape
    x = selected.to_dask()
    assert tuple(sum(c) for c in x.chunks) == want.shape
    np.testing.assert_array_equal(x.compute(scheduler="sync"), want, strict=True)


# --- lazy: only the blocks under the selection are read ---------------------------------------


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """The block (grid index) of every read of block data: the real reads, counted."""
    read = splitds_dask._reader.read_block_region
    blocks: list[tuple[int, ...]] = []

    def counting(path, **kwargs):
        blocks.append(tuple(kwargs["block"]))
        return read(path, **kwargs)

    monkeypatch.setattr(splitds_dask._reader, "read_block_region", counting)
    return blocks


def _corrupt(paths: list[Path]) -> None:
    """Overwrite the stored chunks of these block files: reading their data fails."""
    spoil_chunks(paths)


@pytest.mark.parametrize(
    ("text", "blocks"),
    [
        ("2:4", [1]),
        ("3", [1]),
        ("2:6:3", [1, 2]),
        ("-1", [4]),
        ("7:1:-5", [1, 3]),
        ("..., ::2", [0, 1, 2, 3, 4]),
    ],
)
@pytest.mark.parametrize("target", ["o.npy", "o", "o.tif", "o.ome.zarr"])
def test_convert_reads_only_the_blocks_under_the_selection(
    text: str, blocks: list[int], target: str, tmp_path: Path, random_array, seen
) -> None:
    a = random_array(SHAPE, "u2", seed=9)
    ds = sd.to_split_dataset(a, tmp_path / "src", BLOCK, axes="tzyx")
    _corrupt([p for i, p in enumerate(ds.files.flat) if i not in blocks])
    run = run_main(
        "convert",
        str(tmp_path / "src"),
        str(tmp_path / target),
        "--select",
        text,
        "--scheduler",
        "sync",
    )
    assert run.code == 0, run
    assert f"selected {text}" in run.out
    assert sorted({b[0] for b in seen}) == blocks
    want = a[tuple(numpy_index(text))]
    np.testing.assert_array_equal(_read_back(tmp_path / target), want, strict=True)


def numpy_index(text: str) -> list[object]:
    """The index objects of the few texts of these tests, as the test reads them."""
    out: list[object] = []
    for item in text.split(","):
        item = item.strip()
        if item == "...":
            out.append(Ellipsis)
        elif ":" in item:
            out.append(slice(*(int(v) if v else None for v in item.split(":"))))
        else:
            out.append(int(item))
    return out


def _read_back(path: Path) -> np.ndarray:
    import tifffile

    if path.suffix == ".npy":
        return np.load(path)
    if path.suffix == ".tif":
        return tifffile.imread(path)
    if path.name.endswith(".ome.zarr"):
        import zarr  # zarr 3 needs Python 3.11: the oldest-versions leg leaves these cases out

        return zarr.open_array(store=str(path), path="0", mode="r")[...]
    return sd.SplitDataset(path)[...]


@pytest.mark.parametrize("blocks_per_chunk", [None, "2"])
def test_project_reads_only_the_blocks_under_the_selection(
    blocks_per_chunk, tmp_path: Path, random_array, seen
) -> None:
    a = random_array(SHAPE, "u2", seed=4)
    ds = sd.to_split_dataset(a, tmp_path / "src", BLOCK)
    _corrupt([p for i, p in enumerate(ds.files.flat) if i not in (2, 3)])
    argv = ["project", str(tmp_path / "src"), str(tmp_path / "p.npy"), "--stat", "max"]
    argv += ["--select", "4:8, 1", "--axis", "0", "--scheduler", "sync"]
    if blocks_per_chunk:
        argv += ["--blocks-per-chunk", blocks_per_chunk]
    run = run_main(*argv)
    assert run.code == 0, run
    assert sorted({b[0] for b in seen}) == [2, 3]
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), a[4:8, 1].max(axis=0))


# --- physical metadata ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "axes", "scale"),
    [
        ("::2", ("t", "z", "y", "x"), (1.0, 2.0, 0.3, 0.25)),
        ("3, ::-1, ::3", ("z", "y", "x"), (2.0, 0.9, 0.25)),
        ("..., 1:4:2", ("t", "z", "y", "x"), (0.5, 2.0, 0.3, 0.5)),
        (":, 1, :, 2", ("t", "y"), (0.5, 0.3)),
    ],
)
def test_metadata_follows_the_selection(text, axes, scale, movie, tmp_path: Path) -> None:
    root, a = movie
    run = run_main("convert", str(root), str(tmp_path / "out"), "--select", text)
    assert run.code == 0, run
    out = sd.SplitDataset(tmp_path / "out")
    np.testing.assert_array_equal(out[...], a[tuple(numpy_index(text))], strict=True)
    assert out.axes == axes
    np.testing.assert_allclose(out.scale, scale)
    units = {"t": "second", "z": "micrometer", "y": "micrometer", "x": "micrometer"}
    assert out.units == tuple(units[n] for n in axes)
    assert out.time_step == (scale[0] if axes[0] == "t" else None)


def test_ome_zarr_scale_follows_the_selection(movie, tmp_path: Path) -> None:
    root, _ = movie
    run = run_main("convert", str(root), str(tmp_path / "o.ome.zarr"), "--select", "::4, 0")
    assert run.code == 0, run
    attrs = json.loads((tmp_path / "o.ome.zarr" / "zarr.json").read_text())["attributes"]
    image = attrs["ome"]["multiscales"][0]
    assert [a["name"] for a in image["axes"]] == ["t", "y", "x"]
    scale = image["datasets"][0]["coordinateTransformations"][0]["scale"]
    np.testing.assert_allclose(scale, [2.0, 0.3, 0.25])


def test_project_axis_counts_the_axes_of_the_selection(movie, tmp_path: Path) -> None:
    root, a = movie
    run = run_main(
        "project",
        str(root),
        str(tmp_path / "p.npy"),
        "--select",
        "2",
        "--axis",
        "0",
        "--stat",
        "min",
    )
    assert run.code == 0, run
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), a[2].min(axis=0), strict=True)
    assert "selected 2: (3, 6, 5)" in run.out


@pytest.mark.parametrize(
    "scheduler", ["threads", pytest.param("processes", marks=pytest.mark.subprocess)]
)
def test_a_selection_runs_in_worker_processes(scheduler: str, movie, tmp_path: Path) -> None:
    # The selected reader is pickled into every task.
    root, a = movie
    argv = ["convert", str(root), str(tmp_path / "o.npy"), "--select", "1:8, 2, ::-2"]
    run = run_main(*argv, "--scheduler", scheduler)
    assert run.code == 0, run
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), a[1:8, 2, ::-2], strict=True)


@pytest.mark.parametrize("target", ["out", "o.zarr", "o.h5:/d"])
def test_a_selection_in_other_blocks(target: str, movie, tmp_path: Path) -> None:
    root, a = movie
    argv = ["convert", str(root), str(tmp_path / target), "--select", "::-2, :, 1:5"]
    run = run_main(*argv, "--block-shape", "2,1")
    assert run.code == 0, run
    want = a[::-2, :, 1:5]
    if target == "out":
        out = sd.SplitDataset(tmp_path / "out")
        assert out.shape_block == (2, 1, 4, 5)
        got = out[...]
    elif target == "o.zarr":
        import zarr

        array = zarr.open_array(store=str(tmp_path / target), mode="r")
        assert array.chunks == (2, 1, 4, 5)
        got = array[...]
    else:
        with h5py.File(tmp_path / "o.h5", "r") as f:
            got = f["d"][()]
    np.testing.assert_array_equal(got, want, strict=True)
