"""``local_cluster``, ``worker_environment``, ``connect`` and ``--scheduler`` on a real cluster of
worker processes: the workers start with the malloc setting, and reading, reducing and writing
split datasets there gives numpy's answers."""

from __future__ import annotations

import os
import sys

import dask
import numpy as np
import pytest

import splitds_dask as sd
from splitds_dask._integrations.cluster import MALLOC_MMAP_THRESHOLD
from tests.helpers.cli import assert_one_line_error, package_pythonpath, run_main
from tests.helpers.timeouts import TIMEOUT

distributed = pytest.importorskip("distributed")

PRE_SPAWN = "distributed.nanny.pre-spawn-environ"


@pytest.fixture(scope="module")
def cluster():
    # Worker processes must import the same splitds_dask as this test run.
    with (
        dask.config.set({f"{PRE_SPAWN}.PYTHONPATH": package_pythonpath()}),
        sd.local_cluster(2, dashboard_address=":0", silence_logs=40) as cluster,
    ):
        yield cluster


@pytest.fixture
def client(cluster):
    with distributed.Client(cluster, set_as_default=False) as client:
        yield client


@pytest.fixture(scope="module")
def source(tmp_path_factory, random_array):
    a = random_array((23, 3, 8, 7), "u2", seed=11)
    folder = tmp_path_factory.mktemp("cluster") / "src"
    sd.to_split_dataset(a, folder, (5, 2))
    return folder, a


# --- configuration ----------------------------------------------------------------------------


def test_worker_environment_adds_the_mmap_threshold_to_distributeds_own(monkeypatch) -> None:
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    own = dask.config.get(PRE_SPAWN)
    env = sd.worker_environment()
    assert env["MALLOC_MMAP_THRESHOLD_"] == str(MALLOC_MMAP_THRESHOLD)
    for key, value in own.items():  # MALLOC_TRIM_THRESHOLD_, OMP_NUM_THREADS, ...
        assert env[key] == os.environ.get(key, str(value))
    assert "MALLOC_TRIM_THRESHOLD_" in env
    assert sd.distributed_config() == {PRE_SPAWN: env}


@pytest.mark.parametrize(
    ("configured", "environ", "expected"),
    [
        ({"MALLOC_MMAP_THRESHOLD_": 262144}, None, "262144"),
        ({}, "65536", "65536"),
        ({"MALLOC_MMAP_THRESHOLD_": 262144}, "65536", "65536"),  # the OS wins, as in the nanny
        ({"MALLOC_MMAP_THRESHOLD_": None}, None, None),  # None: distributed's "unset"
    ],
)
def test_worker_environment_respects_what_the_user_set(
    configured, environ, expected, monkeypatch
) -> None:
    if environ is None:
        monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    else:
        monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", environ)
    with dask.config.set({f"{PRE_SPAWN}.{k}": v for k, v in configured.items()}):
        assert sd.worker_environment().get("MALLOC_MMAP_THRESHOLD_") == expected


@pytest.mark.cluster
@pytest.mark.subprocess
@pytest.mark.network
def test_workers_start_with_the_environment(cluster, client) -> None:
    expected = sd.worker_environment()
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS"):
        seen = client.run(os.environ.get, name)
        assert len(seen) == 2
        assert set(seen.values()) == {expected[name]}, name
    pids = set(client.run(os.getpid).values())
    assert len(pids) == 2
    assert os.getpid() not in pids


@pytest.mark.cluster
@pytest.mark.subprocess
@pytest.mark.network
def test_workers_added_later_start_with_it_too(cluster, client) -> None:
    cluster.scale(3)
    try:
        client.wait_for_workers(3, timeout=TIMEOUT)
        seen = client.run(os.environ.get, "MALLOC_MMAP_THRESHOLD_")
        assert len(seen) == 3
        assert set(seen.values()) == {str(MALLOC_MMAP_THRESHOLD)}
    finally:
        cluster.scale(2)
        cluster.sync(cluster._correct_state)


@pytest.mark.parametrize("kwargs", [{"processes": False}, {"worker_class": object}])
def test_local_cluster_rejects_what_would_lose_the_setting(kwargs) -> None:
    with pytest.raises(TypeError, match=next(iter(kwargs))):
        sd.local_cluster(1, **kwargs)


@pytest.mark.parametrize("function", [sd.local_cluster, lambda: sd.connect("tcp://127.0.0.1:1")])
def test_without_distributed_the_error_names_the_extra(function, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"splitds-dask\[distributed\]"):
        function()


# --- read, reduce, write on the cluster -------------------------------------------------------


@pytest.mark.cluster
@pytest.mark.subprocess
@pytest.mark.network
def test_read_reduce_write(client, source, tmp_path) -> None:
    folder, a = source
    x = sd.SplitDataset(folder).to_dask()
    with dask.config.set(scheduler=client):
        np.testing.assert_array_equal(x.compute(), a, strict=True)
        np.testing.assert_allclose(x.mean(axis=0).compute(), a.mean(axis=0), rtol=1e-12)
        # dtype given: without it, dask's array-expr std asks np.iscomplexobj, which the expr
        # Array refuses (NotImplementedError).
        std = x.std(axis=(0, 3), dtype=np.float64)
        np.testing.assert_allclose(std.compute(), a.std(axis=(0, 3)), rtol=1e-9)
        assert x[:, 1].max().compute() == a[:, 1].max()
        out = sd.to_split_dataset((x // 3).astype(np.uint16), tmp_path / "out", (7, 3, 4))
    assert out.shape_block == (7, 3, 4, 7)
    np.testing.assert_array_equal(out[...], a // 3, strict=True)
    assert sorted(os.listdir(tmp_path)) == ["out"]


@pytest.mark.cluster
@pytest.mark.subprocess
@pytest.mark.network
def test_connect_by_address(cluster, source) -> None:
    folder, a = source
    with sd.connect(cluster.scheduler_address) as client:
        assert dask.base.get_scheduler() == client.get
        total = sd.SplitDataset(folder).to_dask().sum(dtype=np.int64).compute()
        workers = set(client.scheduler_info()["workers"])
    assert total == a.sum(dtype=np.int64)
    assert len(workers) >= 2


# --- the command line on the cluster ----------------------------------------------------------


@pytest.mark.cluster
@pytest.mark.subprocess
@pytest.mark.network
def test_commands_on_a_scheduler_address(cluster, source, tmp_path) -> None:
    folder, a = source
    address = cluster.scheduler_address
    run = run_main(
        "convert", str(folder), str(tmp_path / "c"), "--block-shape", "9", "--scheduler", address
    )
    assert run.code == 0, run
    np.testing.assert_array_equal(sd.SplitDataset(tmp_path / "c")[...], a, strict=True)
    run = run_main("project", str(folder), str(tmp_path / "m.npy"), "--scheduler", address)
    assert run.code == 0, run
    np.testing.assert_allclose(np.load(tmp_path / "m.npy"), a.mean(axis=0), rtol=1e-12)
    run = run_main("convert", str(folder), str(tmp_path / "c.zarr"), "--scheduler", address)
    assert run.code == 0, run


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.subprocess
@pytest.mark.network
def test_commands_on_a_local_cluster(source, tmp_path) -> None:
    folder, a = source
    with dask.config.set({f"{PRE_SPAWN}.PYTHONPATH": package_pythonpath()}):
        run = run_main(
            "project",
            str(folder),
            str(tmp_path / "max.npy"),
            "--stat",
            "max",
            "--scheduler",
            "local",
        )
    assert run.code == 0, run
    np.testing.assert_array_equal(np.load(tmp_path / "max.npy"), a.max(axis=0), strict=True)


@pytest.mark.slow
@pytest.mark.network
def test_unreachable_scheduler_is_a_one_line_error(source, tmp_path) -> None:
    folder, _ = source
    run = run_main(
        "project", str(folder), str(tmp_path / "m.npy"), "--scheduler", "tcp://127.0.0.1:1"
    )
    assert_one_line_error(run, 1, "tcp://127.0.0.1:1")
    assert not (tmp_path / "m.npy").exists()
