"""Nothing outside the dataset folder is read by default, and readers of a replaced dataset fail.

Each hostile block is read through every read path: ``ds[...]``, ``np.asarray``, the dask array
(threads, synchronous, processes), the napari reader, the xarray engine and ``splitds
info/verify/convert`` in a subprocess. By default each is refused with an error naming the block
file and where its data points; with ``allow_external=True`` (``--allow-external``) each reads
the outside values, compared with numpy. FIFOs are opened in fresh subprocesses with a timeout:
a hang is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import dask
import h5py
import hdf5plugin
import numpy as np
import pytest
import xarray as xr
from dask.callbacks import Callback

import splitds_dask as sd
from splitds_dask._integrations.napari import napari_get_reader
from tests.helpers.cli import package_env, splitds_command
from tests.helpers.timeouts import TIMEOUT

SHAPE = (6, 5, 8)
BLOCK = 2  # three blocks along axis 0; the hostile one is block 1 unless said otherwise
KEY = "stack_3D"
CHUNKS = (1, 5, 8)
BLOSC = dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))
# Waits for a subprocess that opens a FIFO: a correct run takes seconds.
FIFO_TIMEOUT = min(TIMEOUT, 120.0)


def _base() -> np.ndarray:
    return np.arange(np.prod(SHAPE), dtype=np.uint16).reshape(SHAPE)


def _outside_values() -> np.ndarray:
    return (50_000 + np.arange(BLOCK * 5 * 8, dtype=np.uint16)).reshape(BLOCK, 5, 8)


def _write_block(path: Path, data: np.ndarray) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset(KEY, data=data, chunks=CHUNKS, **BLOSC)


def _write_dataset(folder: Path, data: np.ndarray) -> None:
    folder.mkdir(parents=True)
    for i in range(SHAPE[0] // BLOCK):
        _write_block(folder / f"{i:04d}.h5", data[i * BLOCK : (i + 1) * BLOCK])
    meta = {"shape_full": list(SHAPE), "shape_block": [BLOCK, *SHAPE[1:]], "padding": [0, 0, 0]}
    (folder / "stack_metadata.json").write_text(json.dumps(meta))


class Hostile(NamedTuple):
    folder: Path
    block_file: Path
    expected: np.ndarray  # what reading with allow_external=True gives
    points_to: str  # a fragment the refusal names


def _outside_h5(where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    target = where / "secret.h5"
    with h5py.File(target, "w") as f:
        f.create_dataset("data", data=_outside_values(), chunks=CHUNKS, **BLOSC)
    return target


def _make(tmp_path: Path, case: str, block: int = 1) -> Hostile:
    """A dataset whose block ``block`` reads ``_outside_values()`` from outside its folder."""
    folder = tmp_path / "ds"
    _write_dataset(folder, _base())
    outside = tmp_path / "elsewhere"
    path = folder / f"{block:04d}.h5"
    expected = _base()
    expected[block * BLOCK : (block + 1) * BLOCK] = _outside_values()
    points_to = str(outside)
    if case == "symlink":
        target = outside / "0001.h5"
        outside.mkdir()
        _write_block(target, _outside_values())
        path.unlink()
        path.symlink_to(target)
    elif case in ("external_link", "external_link_decoy"):
        target = _outside_h5(outside)
        with h5py.File(path, "w") as f:
            if case == "external_link_decoy":
                # Laid out exactly like the linked array: byte offsets of one fit the other.
                f.create_dataset("decoy", data=_outside_values() * 0 + 7, chunks=CHUNKS, **BLOSC)
            f[KEY] = h5py.ExternalLink(str(target), "/data")
        points_to = f"{target}:/data"
    elif case == "soft_through_external":
        target = _outside_h5(outside)
        with h5py.File(path, "w") as f:
            f["ext"] = h5py.ExternalLink(str(target), "/")
            f[KEY] = h5py.SoftLink("/ext/data")
    elif case == "virtual":
        target = _outside_h5(outside)
        layout = h5py.VirtualLayout(shape=(BLOCK, 5, 8), dtype=np.uint16)
        layout[:] = h5py.VirtualSource(str(target), "data", shape=(BLOCK, 5, 8))
        with h5py.File(path, "w") as f:
            f.create_virtual_dataset(KEY, layout, fillvalue=0)
    elif case == "external_storage":
        outside.mkdir()
        raw = outside / "secret.bin"
        raw.write_bytes(_outside_values().tobytes())
        with h5py.File(path, "w") as f:
            f.create_dataset(
                KEY, shape=(BLOCK, 5, 8), dtype=np.uint16, external=[(str(raw), 0, 160)]
            )
    else:
        raise AssertionError(case)
    return Hostile(folder, path, expected, points_to)


CASES = [
    "symlink",
    "external_link",
    "external_link_decoy",
    "soft_through_external",
    "virtual",
    "external_storage",
]


def _napari(folder: Path) -> np.ndarray:
    reader = napari_get_reader(str(folder))
    assert reader is not None
    ((data, _, _),) = reader(str(folder))
    return np.asarray(data)


def _xarray(folder: Path, **kwargs: Any) -> np.ndarray:
    with xr.open_dataset(folder, engine="splitds", **kwargs) as opened:
        return opened["ds"].values


def _dask(scheduler: str) -> Any:
    def read(folder: Path, **kwargs: Any) -> np.ndarray:
        return sd.SplitDataset(folder, **kwargs).to_dask().compute(scheduler=scheduler)

    return read


READS = {
    "getitem": lambda folder, **kw: sd.SplitDataset(folder, **kw)[...],
    "getitem_block": lambda folder, **kw: sd.SplitDataset(folder, **kw)[BLOCK + 1],
    "asarray": lambda folder, **kw: np.asarray(sd.SplitDataset(folder, **kw)),
    "dask_threads": _dask("threads"),
    "dask_sync": _dask("synchronous"),
    "dask_processes": _dask("processes"),
    "xarray": _xarray,
    "napari": lambda folder, **kw: _napari(folder),
}


@pytest.mark.parametrize("read", list(READS))
@pytest.mark.parametrize("case", CASES)
def test_outside_data_is_refused(tmp_path: Path, case: str, read: str) -> None:
    hostile = _make(tmp_path, case)
    with pytest.raises(sd.BlockError, match="allow_external=True") as caught:
        READS[read](hostile.folder)
    message = str(caught.value)
    assert str(hostile.block_file) in message
    assert hostile.points_to in message
    assert "(1, 0, 0)" in message


@pytest.mark.parametrize("read", [r for r in READS if r != "napari"])  # napari has no opt-in
@pytest.mark.parametrize("case", CASES)
def test_allow_external_reads_the_outside_data(tmp_path: Path, case: str, read: str) -> None:
    hostile = _make(tmp_path, case)
    got = READS[read](hostile.folder, allow_external=True)
    want = hostile.expected[BLOCK + 1] if read == "getitem_block" else hostile.expected
    np.testing.assert_array_equal(got, want)
    assert got.dtype == want.dtype


@pytest.mark.parametrize("case", CASES)
def test_outside_first_block_is_refused_at_opening(tmp_path: Path, case: str) -> None:
    hostile = _make(tmp_path, case, block=0)
    with pytest.raises(sd.BlockError, match="allow_external=True"):
        sd.SplitDataset(hostile.folder).dtype  # noqa: B018 - opening reads block 0's header
    np.testing.assert_array_equal(
        sd.SplitDataset(hostile.folder, allow_external=True)[...], hostile.expected
    )


def test_decoy_is_never_read_with_the_opt_in(tmp_path: Path) -> None:
    """The external link's target, not the decoy laid out alike in the block file (read twice:
    the second read would use a cached chunk map)."""
    hostile = _make(tmp_path, "external_link_decoy")
    ds = sd.SplitDataset(hostile.folder, allow_external=True)
    for _ in range(2):
        np.testing.assert_array_equal(ds[BLOCK : 2 * BLOCK], _outside_values())


def _cli(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*splitds_command(), *args],
        capture_output=True,
        text=True,
        env=package_env(),
        timeout=timeout,
        check=False,
    )


@pytest.mark.subprocess
@pytest.mark.parametrize("case", CASES)
def test_cli_refuses_outside_data(tmp_path: Path, case: str) -> None:
    hostile = _make(tmp_path, case)
    verify = _cli("verify", str(hostile.folder))
    assert verify.returncode == 1, verify
    assert "outside:" in verify.stdout, verify
    assert str(hostile.block_file) in verify.stdout, verify
    converted = tmp_path / "out.npy"
    convert = _cli("convert", str(hostile.folder), str(converted), "--scheduler", "sync")
    assert convert.returncode == 1, convert
    assert "allow_external" in convert.stderr, convert
    assert len(convert.stderr.strip().splitlines()) == 1, convert
    assert not converted.exists()
    projected = tmp_path / "max.npy"
    project = _cli("project", str(hostile.folder), str(projected), "--stat", "max")
    assert project.returncode == 1, project
    assert "allow_external" in project.stderr, project
    assert not projected.exists()
    # info reads block 0's header: refused when block 0 is the hostile one.
    first = _make(tmp_path / "first", case, block=0)
    info = _cli("info", str(first.folder))
    assert info.returncode == 1, info
    assert str(first.block_file) in info.stderr, info
    assert "allow_external" in info.stderr, info


@pytest.mark.subprocess
@pytest.mark.parametrize("case", CASES)
def test_cli_allow_external(tmp_path: Path, case: str) -> None:
    hostile = _make(tmp_path, case, block=0)
    verify = _cli("verify", str(hostile.folder), "--allow-external")
    assert verify.returncode == 0, verify
    info = _cli("info", str(hostile.folder), "--json", "--allow-external")
    assert info.returncode == 0, info
    assert json.loads(info.stdout)["shape"] == list(SHAPE)
    converted = tmp_path / "out.npy"
    convert = _cli(
        "convert", str(hostile.folder), str(converted), "--scheduler", "sync", "--allow-external"
    )
    assert convert.returncode == 0, convert
    np.testing.assert_array_equal(np.load(converted), hostile.expected)
    projected = tmp_path / "max.npy"
    project = _cli(
        "project", str(hostile.folder), str(projected), "--stat", "max", "--allow-external"
    )
    assert project.returncode == 0, project
    np.testing.assert_array_equal(np.load(projected), hostile.expected.max(axis=0))


# --- what stays allowed -----------------------------------------------------------------------


def test_links_inside_the_folder_are_read(tmp_path: Path) -> None:
    folder = tmp_path / "ds"
    data = _base()
    _write_dataset(folder, data)
    # A block file linked to a file inside the folder (also in a subfolder), by a relative and
    # an absolute link, and an array reached by soft links inside its file.
    (folder / "sub").mkdir()
    os.replace(folder / "0001.h5", folder / "sub" / "real.h5")
    (folder / "0001.h5").symlink_to(Path("sub") / "real.h5")
    os.replace(folder / "0002.h5", folder / "real2.h5")
    (folder / "0002.h5").symlink_to(folder / "real2.h5")
    with h5py.File(folder / "0000.h5", "a") as f:
        f.move(KEY, "/g/inner")
        f["alias"] = h5py.SoftLink("/g/inner")
        f[KEY] = h5py.SoftLink("alias")
    ds = sd.SplitDataset(folder)
    np.testing.assert_array_equal(ds[...], data)
    np.testing.assert_array_equal(ds.to_dask().compute(scheduler="sync"), data)
    assert sd.verify(folder) == []


def test_virtual_dataset_inside_its_own_file_is_refused_by_default(tmp_path: Path) -> None:
    """A VDS reading only its own file is still a VDS: refused unless allowed, then read."""
    folder = tmp_path / "ds"
    _write_dataset(folder, _base())
    path = folder / "0001.h5"
    with h5py.File(path, "a") as f:
        f.move(KEY, "real")
        layout = h5py.VirtualLayout(shape=(BLOCK, 5, 8), dtype=np.uint16)
        layout[:] = h5py.VirtualSource(".", "real", shape=(BLOCK, 5, 8))
        f.create_virtual_dataset(KEY, layout, fillvalue=0)
    with pytest.raises(sd.BlockError, match="virtual dataset"):
        sd.SplitDataset(folder)[...]
    np.testing.assert_array_equal(sd.SplitDataset(folder, allow_external=True)[...], _base())


def test_virtual_dataset_with_missing_source_is_an_error(tmp_path: Path) -> None:
    """HDF5 would return the fill value; with the opt-in it is an error naming the source."""
    hostile = _make(tmp_path, "virtual")
    (tmp_path / "elsewhere" / "secret.h5").unlink()
    ds = sd.SplitDataset(hostile.folder, allow_external=True)
    with pytest.raises(sd.BlockError, match=r"source file .*secret\.h5 is missing"):
        ds[...]
    np.testing.assert_array_equal(ds[:BLOCK], _base()[:BLOCK])


@pytest.mark.parametrize("where", ["outside", "inside"])
def test_metadata_file_linked_outside(tmp_path: Path, where: str) -> None:
    folder = tmp_path / "ds"
    _write_dataset(folder, _base())
    meta = folder / "stack_metadata.json"
    target = (tmp_path / "meta.json") if where == "outside" else (folder / "real_meta.txt")
    os.replace(meta, target)
    meta.symlink_to(target)
    if where == "outside":
        with pytest.raises(sd.MetadataError, match="outside the dataset folder"):
            sd.SplitDataset(folder)
        assert sd.SplitDataset(folder, allow_external=True).shape == SHAPE
    else:
        assert sd.SplitDataset(folder).shape == SHAPE


# --- FIFOs, in fresh subprocesses: a hang is a failure ----------------------------------------

_FIFO_SCRIPT = textwrap.dedent(
    """
    import json, sys, warnings
    import numpy as np
    import splitds_dask as sd
    from splitds_dask._integrations.napari import napari_get_reader

    folder, allow = sys.argv[1], sys.argv[2] == "1"
    warnings.simplefilter("ignore")

    def run(how):
        if how == "open":
            sd.SplitDataset(folder, allow_external=allow).dtype
        elif how == "getitem":
            sd.SplitDataset(folder, allow_external=allow)[...]
        elif how == "dask":
            sd.SplitDataset(folder, allow_external=allow).to_dask().compute(scheduler="threads")
        elif how == "verify":
            return "PROBLEMS " + " | ".join(p.message for p in sd.verify(folder, allow_external=allow))
        elif how == "napari":
            reader = napari_get_reader(folder)
            if reader is None:
                return "NO READER"
            np.asarray(reader(folder)[0][0])
        return "READ"

    for how in sys.argv[3:]:
        print(how, "...", file=sys.stderr, flush=True)  # where it hung, if it does
        try:
            result = run(how)
        except sd.SplitDatasetError as exc:
            kind = "BlockError" if isinstance(exc, sd.BlockError) else type(exc).__name__
            result = f"ERROR {kind} {exc}"
        print(json.dumps([how, result]), flush=True)
    """
)

HOWS = ["open", "getitem", "dask", "verify", "napari"]


def _run_fifo(folder: Path, allow: bool, hows: list[str]) -> dict[str, str]:
    try:
        done = subprocess.run(
            [sys.executable, "-c", _FIFO_SCRIPT, str(folder), "1" if allow else "0", *hows],
            capture_output=True,
            text=True,
            env=package_env(),
            timeout=FIFO_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"hung on a FIFO; ran: {exc.stderr!r}")
    assert done.returncode == 0, done
    return dict(json.loads(line) for line in done.stdout.splitlines())


def _fifo_case(tmp_path: Path, case: str, block: int) -> Path:
    folder = tmp_path / "ds"
    _write_dataset(folder, _base())
    path = folder / f"{block:04d}.h5"
    fifo = tmp_path / "fifo"
    if case == "block":
        path.unlink()
        os.mkfifo(path)
    elif case == "block_link":
        os.mkfifo(fifo)
        path.unlink()
        path.symlink_to(fifo)
    elif case == "external_storage":
        os.mkfifo(fifo)
        with h5py.File(path, "w") as f:
            f.create_dataset(
                KEY, shape=(BLOCK, 5, 8), dtype=np.uint16, external=[(str(fifo), 0, 160)]
            )
    elif case == "external_link":
        os.mkfifo(fifo)
        with h5py.File(path, "w") as f:
            f[KEY] = h5py.ExternalLink(str(fifo), "/data")
    elif case == "virtual":
        os.mkfifo(fifo)
        layout = h5py.VirtualLayout(shape=(BLOCK, 5, 8), dtype=np.uint16)
        layout[:] = h5py.VirtualSource(str(fifo), "data", shape=(BLOCK, 5, 8))
        with h5py.File(path, "w") as f:
            f.create_virtual_dataset(KEY, layout, fillvalue=0)
    else:
        raise AssertionError(case)
    return folder


@pytest.mark.subprocess
@pytest.mark.parametrize("allow", [False, True])
@pytest.mark.parametrize(
    "case", ["block", "block_link", "external_storage", "external_link", "virtual"]
)
@pytest.mark.parametrize("block", [0, 2])
def test_fifo_never_blocks(tmp_path: Path, case: str, allow: bool, block: int) -> None:
    """Block 0 is opened to learn the dtype, block 2 (the last row) for its shape; every read
    path is tried, each must answer at once."""
    folder = _fifo_case(tmp_path, case, block)
    results = _run_fifo(folder, allow, HOWS)
    assert list(results) == HOWS
    # The error says what is wrong: the FIFO, or (by default) data outside the folder.
    why = "FIFO" if case == "block" or allow else "allow_external=True"
    for how, result in results.items():
        if how == "open" and block != 0:
            assert result == "READ"  # the hostile block is read later
        elif how == "napari" and block == 0:
            assert result == "NO READER"  # napari is told the folder is not for this plugin
        elif how == "verify":
            assert result.startswith("PROBLEMS "), result
            assert why in result, result
            assert f"{block:04d}.h5" in result, result
        else:
            assert result.startswith("ERROR BlockError"), (how, result)
            if how == "napari" and case != "block":
                assert "allow_external=True" in result  # napari has no opt-in
            else:
                assert why in result, (how, result)


@pytest.mark.subprocess
@pytest.mark.parametrize("case", ["fifo", "link_out", "metadata_link_to_fifo"])
def test_legacy_metadata_never_reaches_out(tmp_path: Path, case: str) -> None:
    """No json: the metadata is read from the last block file, which is checked first."""
    folder = _fifo_case(tmp_path, "block", 2) if case == "fifo" else tmp_path / "ds"
    if case != "fifo":
        _write_dataset(folder, _base())
    (folder / "stack_metadata.json").unlink()
    last = folder / "0002.h5"
    if case == "link_out":
        elsewhere = tmp_path / "elsewhere.h5"
        os.replace(last, elsewhere)
        last.symlink_to(elsewhere)
    elif case == "metadata_link_to_fifo":
        os.mkfifo(tmp_path / "fifo")
        with h5py.File(last, "a") as f:
            f["stack_metadata"] = h5py.ExternalLink(str(tmp_path / "fifo"), "/")
    result = _run_fifo(folder, False, ["open"])["open"]
    if case == "metadata_link_to_fifo":
        assert result.startswith("ERROR NotASplitDatasetError"), result
    else:
        assert result.startswith("ERROR MetadataError"), result
        assert "FIFO" in result if case == "fifo" else "outside the dataset folder" in result


@pytest.mark.subprocess
@pytest.mark.parametrize("command", ["info", "verify"])
def test_cli_with_a_fifo_block(tmp_path: Path, command: str) -> None:
    folder = _fifo_case(tmp_path, "block", 0)
    try:
        done = _cli(command, str(folder), timeout=FIFO_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"splitds {command} hung on a FIFO")
    assert done.returncode == 1, done
    assert "FIFO" in done.stdout + done.stderr, done


# --- a dataset replaced while it is read ------------------------------------------------------


class _OverwriteAfter(Callback):
    """Replaces the dataset folder once ``after`` read tasks have run."""

    def __init__(self, after: int, overwrite: Any) -> None:
        super().__init__()
        self.after, self.done, self.overwrite = after, 0, overwrite

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        if isinstance(result, np.ndarray):
            self.done += 1
            if self.done == self.after:
                self.overwrite()


N_FRAMES = 20


@pytest.mark.parametrize("scheduler", ["synchronous", "threads"])
def test_compute_spanning_an_overwrite_fails(tmp_path: Path, scheduler: str) -> None:
    folder = tmp_path / "ds"
    old = np.zeros((N_FRAMES, 4, 6), np.int32)
    new = np.ones((N_FRAMES, 4, 6), np.int32)
    sd.to_split_dataset(old, folder, 1)
    x = sd.SplitDataset(folder).to_dask()

    def overwrite() -> None:
        sd.to_split_dataset(new, folder, 1, overwrite=True)

    with (
        _OverwriteAfter(8, overwrite),
        dask.config.set(num_workers=1),
        pytest.raises(sd.SplitDatasetError, match="was replaced since it was opened"),
    ):
        x.compute(scheduler=scheduler)
    # Opened again: the new version, whole.
    np.testing.assert_array_equal(sd.SplitDataset(folder)[...], new)


@pytest.mark.parametrize("read", ["getitem", "dask", "xarray"])
def test_reads_after_an_overwrite_fail(tmp_path: Path, read: str) -> None:
    """Half read, folder replaced, the rest read through the same reader: an error."""
    folder = tmp_path / "ds"
    old = np.zeros((N_FRAMES, 3), np.int16)
    sd.to_split_dataset(old, folder, 2)
    ds = sd.SplitDataset(folder)
    readers = {
        "getitem": lambda s: ds[s],
        "dask": lambda s: ds.to_dask()[s].compute(scheduler="sync"),
        "xarray": lambda s: xr.open_dataset(folder, engine="splitds")["ds"].values[s],
    }
    if read == "xarray":
        opened = xr.open_dataset(folder, engine="splitds")
        readers["xarray"] = lambda s: opened["ds"][s].values
    half = slice(0, N_FRAMES // 2)
    np.testing.assert_array_equal(readers[read](half), old[half])
    sd.to_split_dataset(old + 1, folder, 2, overwrite=True)
    with pytest.raises(sd.SplitDatasetError, match=f"dataset at {folder} was replaced"):
        readers[read](slice(N_FRAMES // 2, None))


@pytest.mark.parametrize("read_before", [False, True])
def test_removed_folder_is_named(tmp_path: Path, read_before: bool) -> None:
    folder = tmp_path / "ds"
    sd.to_split_dataset(np.zeros((4, 3), np.uint8), folder, 2)
    ds = sd.SplitDataset(folder)
    if read_before:  # else the first read also opens block 0 to learn the dtype
        np.testing.assert_array_equal(ds[:2], 0)
    os.rename(folder, tmp_path / "moved")
    with pytest.raises(sd.SplitDatasetError, match="was removed since it was opened"):
        ds[...]


def test_pickled_reader_keeps_the_folder_and_opt_in(tmp_path: Path) -> None:
    import pickle

    hostile = _make(tmp_path, "external_link")
    for allow in (False, True):
        reader = sd.SplitDataset(hostile.folder, allow_external=allow).reader
        back = pickle.loads(pickle.dumps(reader))
        assert back.allow_external is allow
        assert back.folder == (os.stat(hostile.folder).st_dev, os.stat(hostile.folder).st_ino)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(back[...], hostile.expected)
