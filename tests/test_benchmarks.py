"""The benchmark suite still runs: every workload, tiny data, one repeat, in a subprocess.

It checks that the table has every row and that every measured number is positive; it never
looks at how fast anything was, nor at PASS/FAIL.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import dask.array as da
import pytest

from tests.helpers.timeouts import TIMEOUT

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

ROOT = Path(__file__).parents[1]
ROW_IDS = ["0a", "0b", "1", "2", "2b", "2c", "2d", "2e", "3a", "3b", "3c", "3d", "3e", "3f"]
ROW_IDS += ["4a", "4b", "4c", "4d", "5", "5b", "6a", "6b", "6c", "6d", "7a", "7b"]
# cluster: (200, 500 blocks) x (x.sum(), x[::7].sum()) x (per block, grouped)
ROW_IDS += [f"8{letter}" for letter in "abcdefgh"]


def _run_benchmark(script: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``benchmarks/<script>`` on this checkout's package; it must succeed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "out.json"
    proc = _run_benchmark(
        "run.py", "--quick", "--repeat", "1", "--data-dir", str(tmp / "data"), "--json", str(out)
    )
    return proc.stdout, json.loads(out.read_text())


def test_table_has_every_row(quick_run: tuple[str, dict]) -> None:
    stdout, result = quick_run
    assert [row["id"] for row in result["rows"]] == ROW_IDS
    table_ids = [line.split("|")[1].strip() for line in stdout.splitlines() if line[:2] == "| "]
    assert table_ids[1:] == ROW_IDS  # after the header line


@pytest.mark.parametrize("row_id", ROW_IDS)
def test_every_number_is_positive(quick_run: tuple[str, dict], row_id: str) -> None:
    (row,) = [r for r in quick_run[1]["rows"] if r["id"] == row_id]
    stats = [row["ours"], *row["peers"].values()]
    stats += [s for extra in row["extra"].values() for s in extra.values()]
    for stat in stats:
        values = [*stat["samples"], stat["median"], stat["min"], stat["max"]]
        values += stat["parts"].values()
        assert all(math.isfinite(v) and v > 0 for v in values), stat
    assert all(math.isfinite(v) and v > 0 for v in row["ratios"].values())
    assert row["nbytes"] is None or row["nbytes"] > 0


def test_machine_is_described(quick_run: tuple[str, dict]) -> None:
    stdout, result = quick_run
    machine = result["machine"]
    assert machine["cores"] > 0
    assert machine["ram_gb"] > 0
    assert result["ceiling_mb_s"] > 0
    for name in ("numpy", "dask", "h5py", "hdf5plugin", "zarr", "kernel", "cpu"):
        assert machine[name], name
        assert machine[name] != "not installed", name
        assert str(machine[name]) in stdout


def test_array_expr_comparison_runs(tmp_path: Path) -> None:
    """benchmarks/array_expr.py: both dask modes, every read, a table of positive times."""
    proc = _run_benchmark(
        "array_expr.py",
        *("--frames", "4", "--block-frames", "2", "--repeat", "1", "--data-dir", str(tmp_path)),
    )
    rows = [line.split("|")[1:-1] for line in proc.stdout.splitlines() if line.startswith("| `")]
    assert [r[0].strip() for r in rows] == ["`x[t]`", "`x[:, z]`", "`x[:, z, y, x]`", "`x[::7]`"]
    for row in rows:
        times = [float(cell.split()[0]) for cell in row[1:4]]
        assert all(math.isfinite(t) and t > 0 for t in times), row
    assert list(tmp_path.iterdir()) == []  # the dataset was removed


CLUSTER_ROWS = [f"8{letter}" for letter in "abcdefgh"]


@pytest.mark.parametrize("row_id", CLUSTER_ROWS)
def test_cluster_rows_count_tasks(quick_run: tuple[str, dict], row_id: str) -> None:
    """Per block, ours runs the minimal reader's graph shape; grouped, fewer tasks."""
    (row,) = [r for r in quick_run[1]["rows"] if r["id"] == row_id]
    tasks = row["extra"]["tasks"]
    ours, minimal = tasks["ours"]["samples"], tasks["minimal"]["samples"]
    if "blocks_per_chunk" in row["workload"]:
        assert max(ours) < min(minimal)
    elif da.array_expr_enabled():
        # There a slice of ours is read as a window of the reader, where the minimal reader
        # (plain from_array) reads each block whole and slices it in a task of its own.
        assert max(ours) <= min(minimal)
    else:
        assert ours == minimal


REMOTE_TINY = ("--frames", "4", "--block-frames", "2", "--planes", "2", "--height", "32")
REMOTE_TINY += ("--width", "32", "--points", "2", "--repeat", "1", "--delays", "0,0.001")
REMOTE_ROWS = ["full read `ds[...]`", "one time point `ds[t]`, cold"]
REMOTE_ROWS += ["one time point `ds[t]`, cold in the opening process"]
REMOTE_ROWS += ["one time point `ds[t]`, warm", "dask mean over t, cold"]
REMOTE_ROWS += ["dask mean over t, cold in the opening process", "dask mean over t, warm"]


@pytest.mark.network
def test_remote_comparison_runs(tmp_path: Path) -> None:
    """benchmarks/remote.py on tiny data: every row for both delays, every peer's result
    checked by the script, its requests counted by the server (127.0.0.1, its own process)."""
    out = tmp_path / "remote.json"
    proc = _run_benchmark("remote.py", *REMOTE_TINY, "--json", str(out))
    result = json.loads(out.read_text())
    assert list(result["delays"]) == ["0.0", "0.001"]
    for rows in result["delays"].values():
        assert [row["row"] for row in rows] == REMOTE_ROWS
        for row in rows:
            assert set(row["results"]) == {"ours", "zarr", "h5py-fsspec"}
            for timing in row["results"].values():
                assert math.isfinite(timing["seconds"])
                assert timing["seconds"] > 0
                assert timing["requests"]["total"] > 0
                assert timing["requests"]["bytes"] > 0
        # With its chunk map kept, or the chunk-map sidecar the dataset was written with
        # fetched at opening, a time point costs ours one range request.
        for name in ("warm", "cold in the opening process"):
            (timed,) = [row for row in rows if row["row"] == f"one time point `ds[t]`, {name}"]
            assert timed["results"]["ours"]["requests"] == {
                "get": 1,
                "head": 0,
                "list": 0,
                "bytes": timed["results"]["ours"]["requests"]["bytes"],
                "total": 1,
            }, name
    assert proc.stdout.count("| full read `ds[...]` |") == 2


@pytest.mark.network
@pytest.mark.parametrize("peer", ["ours", "zarr", "h5py-fsspec"])
def test_remote_comparison_checks_results(peer: str) -> None:
    """A peer giving a wrong answer stops benchmarks/remote.py: no fast wrong figure."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    argv = [*REMOTE_TINY[:-2], "--delays", "0", "--wrong", peer]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "remote.py"), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode != 0
    assert f"{peer}, full read `ds[...]`: the result differs" in proc.stderr
