"""verify() and ``splitds verify`` on real damage: truncated, corrupted, missing, mislabelled
block files, filters that are not available, and bad metadata. Reading damaged blocks raises an
error naming the file and block."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

import splitds_dask as sd
from splitds_dask._cli.main import main


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    data = np.arange(12 * 4 * 40, dtype=np.uint16).reshape(12, 4, 40)
    sd.to_split_dataset(data, tmp_path / "d", block_shape=4)
    return tmp_path / "d"


def _chunk_offset(path: Path) -> int:
    with h5py.File(path) as f:
        return f["stack_3D"].id.get_chunk_info(0).byte_offset


def _patch_filter(path: Path, old: int, new: int) -> None:
    """Change the filter id in a block file's filter pipeline message (a file from elsewhere)."""
    raw = path.read_bytes()
    with h5py.File(path) as f:
        assert f["stack_3D"].id.get_create_plist().get_filter(0)[0] == old
    pattern = old.to_bytes(2, "little") + b"\x08\x00\x01\x00"  # id, name length, flags
    assert raw.count(pattern) == 1
    path.write_bytes(raw.replace(pattern, new.to_bytes(2, "little") + pattern[2:]))


def _kinds(problems: list[sd.Problem]) -> list[tuple[str, str]]:
    return [(p.kind, p.path.name) for p in problems]


def test_a_sound_dataset_has_no_problem(dataset: Path, capsys) -> None:
    assert sd.verify(dataset) == []
    assert main(["verify", str(dataset)]) == 0
    # Three blocks of one chunk each, all written with checksums.
    assert capsys.readouterr().out.splitlines() == [
        f"{dataset}: checksums: 3 chunk(s) checked in 3 block(s); 0 block(s) without checksums",
        f"{dataset}: ok",
    ]


def test_truncated_block(dataset: Path, capsys) -> None:
    block = dataset / "0001.h5"
    block.write_bytes(block.read_bytes()[:600])
    assert _kinds(sd.verify(dataset)) == [("unreadable", "0001.h5")]
    with pytest.raises(sd.BlockError, match=r"block \(1, 0, 0\).*0001\.h5") as info:
        sd.SplitDataset(dataset)[5]
    assert info.value.path == str(block)
    assert info.value.block == (1, 0, 0)
    assert sd.SplitDataset(dataset)[0:4].shape == (4, 4, 40), "other blocks still read"
    assert main(["verify", str(dataset)]) == 1
    out = capsys.readouterr().out
    assert "unreadable:" in out
    assert "0001.h5" in out
    assert "1 problem(s)" in out


def test_corrupted_compressed_chunk(dataset: Path) -> None:
    block = dataset / "0002.h5"
    raw = bytearray(block.read_bytes())
    offset = _chunk_offset(block)
    raw[offset : offset + 16] = b"\xff" * 16  # the Blosc header: sizes no longer make sense
    block.write_bytes(bytes(raw))
    problems = sd.verify(dataset)
    # One problem per block, the first check it fails: the header, before the checksum.
    assert _kinds(problems) == [("data", "0002.h5")]
    assert "chunk 0" in problems[0].message
    assert sd.verify(dataset, read_data=False) == []
    with pytest.raises(sd.BlockError, match=r"block \(2, 0, 0\).*0002\.h5"):
        sd.SplitDataset(dataset)[9]
    with pytest.raises(sd.BlockError, match=r"0002\.h5"):
        sd.SplitDataset(dataset).to_dask().sum().compute()


@pytest.mark.parametrize(
    ("content", "kind", "match"),
    [
        ({"other": np.zeros((4, 4, 40), np.uint16)}, "data-key", "no array 'stack_3D'"),
        ({"stack_3D": np.zeros((3, 4, 40), np.uint16)}, "shape", r"needs at least \(4, 4, 40\)"),
        ({"stack_3D": np.zeros((4, 4, 40), np.int64)}, "dtype", "dtype int64 differs"),
        ({"stack_3D": np.zeros((4, 40), np.uint16)}, "shape", r"has shape \(4, 40\)"),
    ],
)
def test_wrong_key_shape_or_dtype(dataset: Path, content: dict, kind: str, match: str) -> None:
    with h5py.File(dataset / "0001.h5", "w") as f:
        for key, value in content.items():
            f[key] = value
    problems = sd.verify(dataset)
    assert _kinds(problems) == [(kind, "0001.h5")]
    with pytest.raises(sd.BlockError, match=rf"0001\.h5.*{match}"):
        sd.SplitDataset(dataset)[4:8]


def test_an_unreadable_first_block_is_reported(dataset: Path) -> None:
    (dataset / "0000.h5").write_bytes(b"not hdf5")
    problems = sd.verify(dataset)
    assert _kinds(problems) == [("dataset", "0000.h5")], "block 0 carries the dtype"
    assert "cannot open" in problems[0].message


def test_a_hole_in_the_block_numbers(dataset: Path) -> None:
    (dataset / "0001.h5").unlink()
    assert _kinds(sd.verify(dataset)) == [("missing", "0001.h5")]
    with pytest.raises(sd.BlockError, match=r"0001\.h5 is missing"):
        sd.SplitDataset(dataset)[4]


def test_duplicate_block_numbers(dataset: Path) -> None:
    (dataset / "0001.h5").rename(dataset / "001.h5")
    (dataset / "0002.h5").rename(dataset / "0001.h5")
    (dataset / "001.h5").rename(dataset / "1.h5")
    problems = sd.verify(dataset)
    assert [p.kind for p in problems] == ["dataset"]
    assert "two files claim block number 1" in problems[0].message


@pytest.mark.parametrize(
    ("filter_id", "named"),
    [(305, r"HDF5 filter 305 \(LZO\), provided by PyTables"), (32099, r"HDF5 filter 32099")],
)
def test_compression_filter_not_available(dataset: Path, filter_id: int, named: str) -> None:
    for name in ("0000.h5", "0001.h5", "0002.h5"):
        _patch_filter(dataset / name, 32001, filter_id)
    problems = sd.verify(dataset)
    assert [p.kind for p in problems] == ["dataset"]
    # Opening fails already, naming the filter and where it comes from.
    with pytest.raises(sd.BlockError, match=named):
        sd.SplitDataset(dataset)


def test_filter_missing_in_one_block_is_reported_for_that_block(dataset: Path) -> None:
    _patch_filter(dataset / "0001.h5", 32001, 305)
    problems = sd.verify(dataset)
    assert _kinds(problems) == [("filter", "0001.h5")]
    assert "LZO" in problems[0].message
    with pytest.raises(sd.BlockError, match=r"0001\.h5.*305"):
        sd.SplitDataset(dataset)[4]


@pytest.mark.parametrize(
    ("metadata", "match"),
    [
        ({"shape_full": "12,4,40", "shape_block": [4, 4, 40]}, "list of integers"),
        ({"shape_full": [12, 4.5, 40], "shape_block": [4, 4, 40]}, "list of integers"),
        ({"shape_full": [12, True, 40], "shape_block": [4, 4, 40]}, "list of integers"),
        ({"shape_full": [-12, 4, 40], "shape_block": [4, 4, 40]}, "negative"),
        ({"shape_full": [12, 4, 40], "shape_block": [0, 4, 40]}, "positive"),
        ({"shape_full": [12, 4, 40], "shape_block": [-4, 4, 40]}, "positive"),
        ({"shape_full": [], "shape_block": []}, "empty"),
        ({"shape_full": [12, 4, 40]}, "missing key 'shape_block'"),
        ({"shape_full": [12, 4, 40], "shape_block": [4, 4, 40], "resolution": "1um"}, "resol"),
        # absurd: a grid of 10**30 blocks per row; refused before anything is allocated
        ({"shape_full": [12, 10**15, 10**15], "shape_block": [4, 1, 1]}, "do not fill"),
        ({"shape_full": [4, 4, 40], "shape_block": [4, 4, 40]}, "declares 1 blocks"),
        ([12, 4, 40], "JSON object"),
    ],
)
def test_bad_metadata(dataset: Path, metadata: object, match: str) -> None:
    (dataset / "stack_metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(sd.MetadataError, match=match):
        sd.SplitDataset(dataset)
    problems = sd.verify(dataset)
    assert [p.kind for p in problems] == ["dataset"]
    assert "stack_metadata.json" in problems[0].message


def test_incomplete_dataset_is_reported(dataset: Path) -> None:
    (dataset / "0002.h5").unlink()
    problems = sd.verify(dataset)
    assert [p.kind for p in problems] == ["incomplete"]
    assert "(8, 4, 40)" in problems[0].message


def test_cli_quick_and_bad_path(dataset: Path, tmp_path: Path, capsys) -> None:
    assert main(["verify", "--quick", str(dataset)]) == 0
    assert main(["verify", str(tmp_path / "nothing")]) == 1
    assert "no such folder" in capsys.readouterr().out


# --- in parallel, on every scheduler --------------------------------------------------------------


@pytest.fixture
def damaged(tmp_path: Path) -> Path:
    """Six blocks of one chunk each: block 1 truncated, block 2's Blosc header overwritten,
    block 4's last payload byte flipped (its CRC32C no longer matches)."""
    data = np.arange(24 * 4 * 40, dtype=np.uint16).reshape(24, 4, 40)
    sd.to_split_dataset(data, tmp_path / "d", block_shape=4)
    root = tmp_path / "d"
    truncated = root / "0001.h5"
    truncated.write_bytes(truncated.read_bytes()[:600])
    for name, damage in (("0002.h5", "header"), ("0004.h5", "payload")):
        with h5py.File(root / name) as f:
            info = f["stack_3D"].id.get_chunk_info(0)
        raw = bytearray((root / name).read_bytes())
        if damage == "header":
            raw[info.byte_offset : info.byte_offset + 16] = b"\xff" * 16
        else:
            raw[info.byte_offset + info.size - 1] ^= 0xFF
        (root / name).write_bytes(bytes(raw))
    return root


# Problems in block order, one per block; the kinds are fixed by the damage alone.
DAMAGED = [("unreadable", "0001.h5"), ("data", "0002.h5"), ("checksum", "0004.h5")]


@pytest.mark.parametrize(
    "scheduler",
    ["sync", "threads", pytest.param("processes", marks=pytest.mark.subprocess)],
)
def test_the_same_problems_on_every_local_scheduler(damaged: Path, scheduler: str) -> None:
    problems = sd.verify(damaged, scheduler=scheduler)
    assert _kinds(problems) == DAMAGED
    assert [p.block for p in problems] == [(1, 0, 0), (2, 0, 0), (4, 0, 0)]
    assert "chunk 0" in problems[1].message
    assert "CRC32C mismatch" in problems[2].message
    # Messages name the file, whichever process checked it.
    assert all(
        str(damaged / name) in p.message for p, (_, name) in zip(problems, DAMAGED, strict=True)
    )
    assert sd.verify(damaged, scheduler=scheduler) == sd.verify(damaged, scheduler="sync")


@pytest.mark.cluster
@pytest.mark.subprocess
@pytest.mark.network
def test_the_same_problems_on_a_distributed_cluster(damaged: Path, client) -> None:
    problems = sd.verify(damaged, scheduler=client)
    assert _kinds(problems) == DAMAGED
    assert problems == sd.verify(damaged, scheduler="sync")
    # The checks ran as the cluster's tasks, one per block (six blocks).
    assert client.run_on_scheduler(_verify_tasks) == 6


def _verify_tasks(dask_scheduler) -> int:
    """Tasks of verify's checks the cluster's scheduler has seen."""
    return len(
        {
            entry[0]
            for entry in dask_scheduler.transition_log
            if entry[2] == "memory" and str(entry[0]).startswith("('verify-blocks")
        }
    )


@pytest.mark.parametrize(
    "scheduler", ["sync", "threads", pytest.param("processes", marks=pytest.mark.subprocess)]
)
def test_cli_honours_the_scheduler(damaged: Path, scheduler: str, capsys) -> None:
    assert main(["verify", "--scheduler", scheduler, "--no-progress", str(damaged)]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == [kind for kind, _ in DAMAGED]
    assert lines[-1] == f"{damaged}: 3 problem(s)"
    assert captured.err == ""


def test_progress_goes_to_stderr_and_the_report_to_stdout(damaged: Path, capsys) -> None:
    from splitds_dask._cli.schedulers import Runner
    from splitds_dask._cli.verify import print_report

    assert print_report(damaged, compute=Runner(None, True).compute) == 1
    captured = capsys.readouterr()
    assert "100% Completed" in captured.err
    assert "Completed" not in captured.out
    assert captured.out.splitlines()[-1] == f"{damaged}: 3 problem(s)"


def _largest_task_bytes(folder: Path) -> tuple[int, int]:
    """(pickled bytes of the largest check task, number of tasks) of ``folder``'s verify."""
    import cloudpickle

    from splitds_dask._verify import plan_verify

    tasks = plan_verify(folder).tasks
    sizes = []
    for task in tasks:
        graph = dict(task.__dask_graph__())
        sizes.append(len(cloudpickle.dumps(graph[task.key])))
    return max(sizes), len(tasks)


def test_a_task_carries_the_same_bytes_at_100_or_20_000_blocks(
    tmp_path: Path, hard_linked_dataset
) -> None:
    hard_linked_dataset(tmp_path / "small", 100)
    hard_linked_dataset(tmp_path / "large", 20_000)
    small, n_small = _largest_task_bytes(tmp_path / "small")
    large, n_large = _largest_task_bytes(tmp_path / "large")
    assert n_small == 100  # one block per task
    assert n_large <= 1024  # groups of consecutive blocks
    assert large <= small + 16, (small, large)  # a few more digits in the range, nothing more
    assert sd.verify(tmp_path / "large", read_data=False) == []


@pytest.mark.parametrize("max_tasks", [1, 2, 5])
def test_groups_of_blocks_named_by_no_rule(tmp_path: Path, max_tasks: int) -> None:
    """Names of mixed widths are carried as a list: each task gets its own slice of it."""
    import dask

    from splitds_dask._verify import plan_verify

    root = tmp_path / "d"
    sd.to_split_dataset(np.zeros((5, 4, 4), np.uint16), root, block_shape=1)
    (root / "0002.h5").rename(root / "002.h5")
    (root / "0003.h5").write_bytes(b"not hdf5")
    plan = plan_verify(root, max_tasks=max_tasks)
    assert len(plan.tasks) == max_tasks
    problems = plan.finish(dask.compute(*plan.tasks, scheduler="sync")).problems
    assert [(p.kind, p.path.name, p.block) for p in problems] == [
        ("unreadable", "0003.h5", (3, 0, 0))
    ]


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_a_relative_path_is_named_as_given(
    damaged: Path, scheduler: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(damaged.parent)
    problems = sd.verify("d", scheduler=scheduler)
    assert [p.path for p in problems] == [Path("d", name) for _, name in DAMAGED]
    assert all(
        p.message.startswith(f"d/{name}: ") for p, (_, name) in zip(problems, DAMAGED, strict=True)
    )
    assert str(damaged) not in "".join(p.message for p in problems)
