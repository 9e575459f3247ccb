"""On a real distributed cluster of worker processes: reading, reductions, writing, and graphs
holding functions defined in this test module (pickled by value, the path that breaks designs
putting h5py objects into the graph)."""

from __future__ import annotations

import functools
import math
import os

import dask
import dask.array as da
import h5py
import numpy as np
import pytest

import splitds_dask as sd

pytestmark = [pytest.mark.cluster, pytest.mark.subprocess, pytest.mark.network]

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def source(tmp_path_factory, write_plain, random_array):
    a = random_array((23, 3, 8, 7), "u2", seed=5)
    folder = tmp_path_factory.mktemp("dist") / "src"
    write_plain(folder, a, (5, 1), compression="gzip")
    return folder, a


def test_workers_are_other_processes(client):
    pids = set(client.run(os.getpid).values())
    assert len(pids) == 2
    assert os.getpid() not in pids


def test_read_and_reduce(client, source):
    folder, a = source
    ds = sd.SplitDataset(folder)
    x = ds.to_dask()
    mean = client.compute(x.mean(axis=0)).result()
    np.testing.assert_allclose(mean, a.mean(axis=0), rtol=1e-12)
    np.testing.assert_array_equal(client.compute(x).result(), a, strict=True)
    np.testing.assert_array_equal(client.compute(x[7, :, 2:5]).result(), a[7, :, 2:5], strict=True)
    with distributed.get_task_stream(client) as stream:
        assert client.compute(x.max()).result() == a.max()
    # The reads ran on the workers (fused into the per-block reduction tasks).
    workers = set(client.scheduler_info()["workers"])
    assert len(stream.data) >= math.prod(x.numblocks)  # dask's array-expr Array: no npartitions
    assert {t["worker"] for t in stream.data} <= workers


def test_dataset_object_on_workers(client, source):
    folder, a = source
    ds = sd.SplitDataset(folder)
    future = client.submit(lambda d: (os.getpid(), d[4:9, 2].sum()), ds)
    pid, total = future.result()
    assert pid != os.getpid()
    assert total == a[4:9, 2].sum()


def _scale(block, factor):
    return block.astype(np.float64) * factor


def test_map_blocks_with_test_module_functions(client, source):
    folder, a = source
    x = sd.SplitDataset(folder).to_dask()
    offset = 3  # captured: the lambda is pickled by value, with the reading tasks
    y = x.map_blocks(lambda b: b.astype(np.int64) + offset, dtype=np.int64)
    z = x.map_blocks(_scale, 0.5, dtype=np.float64)
    got_y, got_z = client.gather(client.compute([y.sum(axis=(2, 3)), z[::3, 1]]))
    np.testing.assert_array_equal(got_y, (a.astype(np.int64) + 3).sum(axis=(2, 3)), strict=True)
    np.testing.assert_array_equal(got_z, a[::3, 1] * 0.5, strict=True)


def test_write_compute_false_on_cluster(client, source, tmp_path):
    folder, a = source
    x = sd.SplitDataset(folder).to_dask()
    # A numpy scalar: dask's array-expr mode promotes uint16 * 2 to int64 (numpy keeps uint16).
    doubled = x[::2] * np.uint16(2)
    delayed = sd.to_split_dataset(doubled, tmp_path / "out", (4, 3, 8, 7), compute=False)
    assert not (tmp_path / "out").exists()
    ds = client.compute(delayed).result()
    assert isinstance(ds, sd.SplitDataset)
    np.testing.assert_array_equal(ds[...], a[::2] * 2, strict=True)
    assert sorted(os.listdir(tmp_path)) == ["out"]
    assert len([n for n in os.listdir(tmp_path / "out") if n.endswith(".h5")]) == 3


def test_write_compute_true_with_default_client(client, source, tmp_path):
    folder, a = source
    worker_pids = set(client.run(os.getpid).values())
    with client.as_current(), dask.config.set(scheduler=client):
        ds = sd.to_split_dataset(sd.SplitDataset(folder), tmp_path / "copy", (7, 2))
        # The written dataset is read on the cluster too.
        pids = client.compute(
            da.map_blocks(
                lambda b: np.array([[[[os.getpid()]]]]),
                ds.to_dask(),
                dtype=int,
                chunks=(1, 1, 1, 1),
            )
        ).result()
        mean = ds.to_dask().mean(axis=(0, 2)).compute()
    assert set(np.unique(pids)) <= worker_pids
    np.testing.assert_array_equal(ds[...], a, strict=True)
    np.testing.assert_allclose(mean, a.mean(axis=(0, 2)), rtol=1e-12)
    assert sorted(os.listdir(tmp_path)) == ["copy"]


def test_overwrite_in_place_on_cluster(client, tmp_path, random_array):
    a = random_array((12, 4, 5), "f4")
    sd.to_split_dataset(a, tmp_path / "ds", (3,))
    delayed = sd.to_split_dataset(
        sd.SplitDataset(tmp_path / "ds"), tmp_path / "ds", (5, 2), overwrite=True, compute=False
    )
    ds = client.compute(delayed).result()
    assert ds.shape_block == (5, 2, 5)
    np.testing.assert_array_equal(ds[...], a, strict=True)
    assert sorted(os.listdir(tmp_path)) == ["ds"]


# --- what reaches the workers does not grow with the number of blocks --------------------------


def _scheduler_to_worker_bytes(dask_scheduler) -> int:
    """Bytes the scheduler has sent to its workers (its batched stream to each of them)."""
    return sum(stream.byte_count for stream in dask_scheduler.stream_comms.values())


def _read_numbered(root, block_id=None):
    """The least a reader can do: its task carries what finds its own file, nothing more."""
    with h5py.File(os.path.join(root, f"{block_id[0]:04d}.h5"), "r") as f:
        return f["stack_4D"][...]


def _bytes_per_task(client, x, expected) -> float:
    before = client.run_on_scheduler(_scheduler_to_worker_bytes)
    assert client.compute(x.sum()).result() == expected
    return (client.run_on_scheduler(_scheduler_to_worker_bytes) - before) / math.prod(x.numblocks)


@pytest.mark.slow
def test_bytes_sent_per_task_do_not_grow_with_the_blocks(client, tmp_path, hard_linked_dataset):
    per_task = {}
    for n in (500, 5_000):
        block = hard_linked_dataset(tmp_path / str(n), n)
        x = sd.SplitDataset(tmp_path / str(n)).to_dask()
        per_task[n] = _bytes_per_task(client, x, n * int(block.sum()))
    minimal = da.map_blocks(
        functools.partial(_read_numbered, str(tmp_path / "5000")),
        chunks=((1,) * 5_000, (4,), (3,), (2,)),
        dtype=block.dtype,
        meta=np.empty((0, 0, 0, 0), dtype=block.dtype),
    )
    minimal_per_task = _bytes_per_task(client, minimal, 5_000 * int(block.sum()))
    assert per_task[5_000] <= 1.05 * per_task[500], per_task
    assert per_task[5_000] <= 1.15 * minimal_per_task, (per_task, minimal_per_task)
