"""The ``splitds`` command: arguments, ``info``, and the installed command as a subprocess.

The demo run itself is tested in ``test_demo.py`` (with the helpers and the ``demo`` fixture
defined here), its synthetic data in ``test_synthetic.py``.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sysconfig
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import splitds_dask
import splitds_dask as sd
from splitds_dask import SplitDataset
from splitds_dask._cli.info import dataset_info
from splitds_dask._cli.sizes import format_bytes
from splitds_dask._synthetic import FRAME_BYTES, FRAME_SHAPE
from tests.helpers.cli import (
    BLOCK_FRAMES,
    N_FRAMES,
    PNG_SHAPE,
    Run,
    assert_one_line_error,
    package_env,
    run_main,
    splitds_command,
)
from tests.helpers.png import png_size
from tests.helpers.timeouts import TIMEOUT

# --- arguments --------------------------------------------------------------------------------


def test_demo_defaults_to_a_new_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    run = run_main("demo", "--size", "2MB", "--no-progress", "--scheduler", "sync")
    assert run.code == 0, run
    (folder,) = tmp_path.iterdir()
    assert folder.name.startswith("splitds-demo-")
    assert str(folder) in run.out.splitlines()[0]
    assert SplitDataset(folder / "demo").shape == (1, *FRAME_SHAPE)
    assert (folder / "mean_projection.png").is_file()


@pytest.mark.parametrize(
    ("size", "fragment"),
    [
        ("lots", "invalid size 'lots'"),
        ("12XB", "invalid size '12XB'"),
        ("0", "must be positive"),
        ("-5MB", "invalid size"),
        ("", "invalid size"),
        ("10KB", "less than one time point"),
    ],
)
def test_bad_size_is_a_one_line_usage_error(size: str, fragment: str, tmp_path: Path) -> None:
    run = run_main("demo", str(tmp_path), f"--size={size}")
    assert_one_line_error(run, 2, "--size", fragment)
    assert run.out == ""
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "argv",
    [
        ("demo", "--block-frames", "0"),
        ("demo", "--block-frames", "many"),
        ("demo", "--scheduler", "gpu"),
        ("demo", "--seed", "-1"),
        ("demo", "a", "b"),
        ("info",),
        ("frobnicate",),
        (),
    ],
)
def test_bad_arguments_are_one_line_usage_errors(argv: tuple[str, ...]) -> None:
    assert_one_line_error(run_main(*argv), 2, "splitds")


def test_help_and_version() -> None:
    run = run_main("--help")
    assert run.code == 0
    assert "demo" in run.out
    assert "info" in run.out
    run = run_main("demo", "--help")
    assert run.code == 0
    assert "--size" in run.out
    run = run_main("--version")
    assert run.code == 0
    assert splitds_dask.__version__ in run.out


# --- info -------------------------------------------------------------------------------------


def test_info_text(demo: tuple[Path, Run]) -> None:
    folder, _ = demo
    run = run_main("info", str(folder / "demo"))
    assert run.code == 0, run
    assert run.err == ""
    fields = {line[:13].strip(): line[14:] for line in run.out.splitlines()}
    assert fields["path"] == str(folder / "demo")
    assert fields["shape"] == f"({N_FRAMES}, 8, 256, 256) (tzyx)"
    assert fields["dtype"] == "uint16"
    assert fields["block shape"] == (
        f"({BLOCK_FRAMES}, 8, 256, 256), {format_bytes(BLOCK_FRAMES * FRAME_BYTES)}"
    )
    assert fields["grid"] == "(3, 1, 1, 1) blocks"
    assert fields["files"] == "3"
    assert fields["data key"] == "stack_4D"
    assert fields["compression"] == "blosc lz4 level 5, byte shuffle (HDF5 chunks (1, 8, 256, 256))"
    assert fields["metadata"].startswith("stack_metadata.json: shape_full, shape_block")
    assert f"{N_FRAMES * FRAME_BYTES:,} bytes" in fields["uncompressed"]
    assert "compression ratio" in fields["on disk"]


def test_info_json(demo: tuple[Path, Run]) -> None:
    folder, _ = demo
    run = run_main("info", str(folder / "demo"), "--json")
    assert run.code == 0, run
    info = json.loads(run.out)
    ds = SplitDataset(folder / "demo")
    assert info["path"] == str(folder / "demo")
    assert info["shape"] == list(ds.shape)
    assert info["dtype"] == "uint16"
    assert info["shape_block"] == [BLOCK_FRAMES, *FRAME_SHAPE]
    assert info["grid"] == [3, 1, 1, 1]
    assert info["n_files"] == 3
    assert info["missing_files"] == 0
    assert info["data_key"] == "stack_4D"
    assert info["metadata_file"] == str(folder / "demo" / "stack_metadata.json")
    assert info["metadata_keys"][:2] == ["shape_full", "shape_block"]
    assert info["metadata"]["shape_full"] == list(ds.shape)
    assert info["nbytes"] == ds.nbytes == N_FRAMES * FRAME_BYTES
    on_disk = sum(p.stat().st_size for p in ds.files.flat)
    assert info["bytes_on_disk"] == on_disk
    assert info["compression_ratio"] == pytest.approx(ds.nbytes / on_disk, abs=1e-3)


@pytest.mark.parametrize(
    ("compression", "description", "filter_ids"),
    [
        ("blosc", "blosc lz4 level 5, byte shuffle", [32001]),
        ("blosc:zstd", "blosc zstd level 5, byte shuffle", [32001]),
        ("gzip", "gzip level 4, byte shuffle", [2, 1]),
        ("zstd", "zstd", [32015]),
        ("bzip2", "bzip2", [307]),
        ("blosc2", "blosc2", [32026]),
        (None, "none", []),
    ],
)
def test_info_compression(compression, description, filter_ids, tmp_path: Path) -> None:
    a = np.arange(6 * 5 * 4, dtype=np.uint16).reshape(6, 5, 4)
    sd.to_split_dataset(a, tmp_path / "ds", 4, compression=compression)
    info = dataset_info(tmp_path / "ds")["compression"]
    assert info["description"] == description
    assert [f["id"] for f in info["filters"]] == filter_ids
    assert info["hdf5_chunks"] == (None if compression is None else [4, 5, 4])
    run = run_main("info", str(tmp_path / "ds"))
    assert f"compression   {description}" in run.out


def test_every_command_takes_a_scheduler() -> None:
    run = run_main("--help")
    for command in ("convert", "project", "verify", "demo"):
        assert command in run.out
        sub = run_main(command, "--help")
        assert sub.code == 0
        assert "--scheduler" in sub.out


def test_commands_that_compute_nothing_take_no_scheduler() -> None:
    # info reads metadata, seal reads the files in this process: an option they would ignore is
    # refused instead.
    for command in ("info", "seal"):
        sub = run_main(command, "--help")
        assert sub.code == 0
        assert "--scheduler" not in sub.out
        refused = run_main(command, "somewhere", "--scheduler", "sync")
        assert refused.code == 2
        assert "--scheduler" in refused.err


def test_info_on_a_folder_that_is_not_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hello")
    assert_one_line_error(run_main("info", str(tmp_path)), 1, str(tmp_path))
    assert_one_line_error(run_main("info", str(tmp_path), "--json"), 1, str(tmp_path))


def test_info_on_a_missing_path(tmp_path: Path) -> None:
    assert_one_line_error(run_main("info", str(tmp_path / "nope")), 1, str(tmp_path / "nope"))


def test_info_on_bad_metadata(tmp_path: Path) -> None:
    (tmp_path / "stack_metadata.json").write_text("{not json")
    (tmp_path / "0000.h5").write_bytes(b"")
    assert_one_line_error(run_main("info", str(tmp_path)), 1, "stack_metadata.json")


# --- the installed command, as a real subprocess ---------------------------------------------


def run_command(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*splitds_command(), *argv],
        capture_output=True,
        text=True,
        env=package_env(),  # the package under test, however it is installed (or not)
        timeout=TIMEOUT,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.subprocess
def test_command_demo_and_info(tmp_path: Path) -> None:
    proc = run_command("demo", str(tmp_path), "--size", "4MB", "--block-frames", "2")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "MB/s" in proc.stdout
    assert "Completed" not in proc.stdout  # stdout is not a terminal: no progress bar
    ds = SplitDataset(tmp_path / "demo")
    assert ds.shape == (3, *FRAME_SHAPE)
    assert ds.dtype == np.uint16
    assert png_size(tmp_path / "mean_projection.png") == PNG_SHAPE

    proc = run_command("info", str(tmp_path / "demo"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["shape"] == [3, *FRAME_SHAPE]


@pytest.mark.slow
@pytest.mark.subprocess
def test_command_processes_scheduler(tmp_path: Path) -> None:
    proc = run_command("demo", str(tmp_path), "--size", "3MB", "--scheduler", "processes")
    assert proc.returncode == 0, proc.stderr
    ds = SplitDataset(tmp_path / "demo")
    np.testing.assert_allclose(
        ds.to_dask().mean(axis=0).compute(), np.asarray(ds).mean(axis=0), rtol=1e-12
    )


@pytest.mark.slow
@pytest.mark.subprocess
def test_command_errors(tmp_path: Path) -> None:
    proc = run_command("demo", str(tmp_path), "--size", "huge")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "invalid size 'huge'" in proc.stderr
    assert "Traceback" not in proc.stderr

    proc = run_command("info", str(tmp_path))
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1
    assert str(tmp_path) in proc.stderr
    assert "Traceback" not in proc.stderr


def _installed() -> bool:
    try:
        importlib.metadata.distribution("splitds-dask")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.subprocess
@pytest.mark.skipif(not _installed(), reason="running from a source tree, not an installed package")
def test_console_script_is_installed_and_runs() -> None:
    # Installed (as the README's first command does): the script must sit beside the interpreter.
    script = Path(sysconfig.get_path("scripts")) / "splitds"
    assert script.is_file(), f"{script} missing: pyproject's [project.scripts] is not installed"
    proc = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("splitds ")


# --- one-line errors ----------------------------------------------------------------------------


def test_help_names_the_debug_variable() -> None:
    run = run_main("--help")
    assert run.code == 0
    assert "SPLITDS_DEBUG=1" in " ".join(run.out.split())


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("plain", "plain"),
        ("two\nlines", "two lines"),
        ("", "ValueError"),  # no message: the type's name
        ("x" * 5000, "x" * 1997 + "..."),  # quoted input is cut
    ],
)
def test_one_line(message: str, expected: str) -> None:
    from splitds_dask._cli.messages import one_line

    assert one_line(ValueError(message)) == expected


@pytest.mark.parametrize("depth", [101, 100_000])
def test_deep_metadata_is_one_line_from_every_reading_command(tmp_path: Path, depth: int) -> None:
    (tmp_path / "ds").mkdir()
    for i in range(2):
        with h5py.File(tmp_path / "ds" / f"{i:04d}.h5", "w") as f:
            f["stack"] = np.zeros((2, 3), np.uint8)
    text = '{"shape_full": [4, 3], "shape_block": [2, 3], "x": '
    (tmp_path / "ds" / "stack_metadata.json").write_text(text + "[" * depth + "]" * depth + "}")
    for argv in (
        ("info", str(tmp_path / "ds")),
        ("convert", str(tmp_path / "ds"), str(tmp_path / "out.npy")),
        ("project", str(tmp_path / "ds"), str(tmp_path / "mean.npy")),
    ):
        assert_one_line_error(run_main(*argv), 1, "stack_metadata.json", "nests")


def test_info_of_a_block_declaring_more_than_int64_counts(tmp_path: Path) -> None:
    # 2^40 x 2^40 uint16 declared by a file of a few KB: sizes are exact Python integers.
    with h5py.File(tmp_path / "0000.h5", "w") as f:
        f.create_dataset("stack", shape=(2**40, 2**40), dtype=np.uint16, chunks=(64, 64))
    shape = [2**40, 2**40]
    (tmp_path / "stack_metadata.json").write_text(
        json.dumps({"shape_full": shape, "shape_block": shape})
    )
    info = dataset_info(tmp_path)
    assert info["shape"] == shape
    assert info["block_bytes"] == info["nbytes"] == 2**81
    run = run_main("info", str(tmp_path), "--json")
    assert run.code == 0, run
    assert json.loads(run.out)["block_bytes"] == 2**81
