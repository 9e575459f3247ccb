"""Interoperability with the real split_dataset 0.4.4 (numpy < 2), run in its own cached venv.

Both directions: what ``to_split_dataset`` writes is read back by the old package (its
``SplitDataset`` and the exact ``flammkuchen.load(file, "/<key>", sel=...)`` call it makes), and
what the old package writes is read back by ours. Each direction runs in one subprocess over a
whole matrix of cases.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

import splitds_dask as sd
from splitds_dask._cli.main import main
from tests.helpers.block_writers import WRITERS, sample_array, small_chunks
from tests.helpers.format_facts import ORIGINAL_METADATA_KEYS
from tests.helpers.oldpkg import run_old_checked

# Codecs PyTables (hence the old package) decodes natively. Zstd (32015) is hdf5plugin-only.
OLD_READABLE_CODECS = ["blosc", "blosc:blosclz", "blosc:zstd", "blosc:lz4hc", "gzip", "bzip2", None]

CASES = [
    # (dtype, shape, block_shape, codec)
    ("uint16", (23, 3, 17, 19), (5, 2), "blosc"),
    ("uint16", (7, 2, 30, 40), (20,), "blosc"),  # block longer than the data
    ("int16", (9, 4, 8, 8), (2, 1, 8, 8), "blosc:zstd"),
    ("float32", (13, 11, 12), (4, None, 5), "gzip"),
    ("float64", (20, 10, 10), (5, 10, 10), "blosc:blosclz"),
    ("uint8", (31, 5), (8, 2), "bzip2"),
    ("bool", (12, 33, 9), (5, 10), "blosc"),
    ("bool", (6, 4), (4,), None),
    ("int32", (10, 6, 7), (3, 3, 3), "blosc:lz4hc"),
    ("complex64", (8, 9), (3, 4), "gzip"),
    ("uint16", (40, 16, 16), (10,), None),
    ("float16", (6, 7, 8), (2,), "blosc"),
]


def _array(dtype: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random(shape) > 0.5
    if dtype.startswith("complex"):
        return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(dtype)
    if dtype.startswith("float"):
        return rng.normal(100, 10, size=shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


_OLD_READS_OURS = r"""
import json, sys
import numpy as np
import flammkuchen as fl
from split_dataset import SplitDataset

results = {}
for case in json.load(open(sys.argv[1])):
    expected = np.load(case["expected"])
    ds = SplitDataset(case["root"])
    whole = ds[tuple(slice(0, n) for n in ds.shape)]
    same = bool(whole.dtype == expected.dtype and whole.shape == expected.shape
                and np.array_equal(whole, expected))
    # The exact call the old reader makes for one block.
    first = str(ds.files.flat[0])
    sel = fl.aslice[0:1]
    part = fl.load(first, "/" + case["key"], sel=sel)
    results[case["root"]] = {
        "same": same, "dtype": str(whole.dtype), "shape": list(whole.shape),
        "ds_shape": list(ds.shape), "ds_dtype": str(ds.dtype), "data_key": ds.data_key,
        "part_same": bool(np.array_equal(part, expected[tuple(slice(0, n) for n in
                          [1] + list(ds.shape_block[1:]))])),
    }
print(json.dumps(results))
"""


@pytest.mark.subprocess
def test_old_package_reads_what_we_write(tmp_path: Path) -> None:
    cases = []
    for i, (dtype, shape, block_shape, codec) in enumerate(CASES):
        data = _array(dtype, shape, seed=i)
        root = tmp_path / f"case{i}"
        ds = sd.to_split_dataset(data, root, block_shape, compression=codec)
        for block in root.glob("*.h5"):  # what the old package reads carries our checksums
            with h5py.File(block, "r") as f:
                assert "splitds_crc32c" in f[ds.data_key].attrs
        np.save(tmp_path / f"case{i}.npy", data)
        cases.append(
            {"root": str(root), "expected": str(tmp_path / f"case{i}.npy"), "key": ds.data_key}
        )
    manifest = tmp_path / "cases.json"
    manifest.write_text(json.dumps(cases))
    out = json.loads(run_old_checked(_OLD_READS_OURS, manifest).stdout)
    for case, (dtype, shape, _, codec) in zip(cases, CASES, strict=True):
        got = out[case["root"]]
        assert got["same"], (dtype, shape, codec, got)
        assert got["part_same"], (dtype, shape, codec, got)
        assert got["ds_shape"] == list(shape)
        assert got["dtype"] == dtype


_OLD_READS_BLOCKS = r"""
import json, os, sys
import numpy as np
import flammkuchen as fl
from split_dataset import SplitDataset

results = {}
for case in json.load(open(sys.argv[1])):
    expected = np.load(case["expected"])
    ds = SplitDataset(case["root"])
    whole = ds[tuple(slice(0, n) for n in ds.shape)]
    blocks = []
    for name, part in case["blocks"]:
        want = expected[tuple(slice(a, b) for a, b in part)]
        path = os.path.join(case["root"], name)
        got = fl.load(path, "/" + case["key"])
        first = fl.load(path, "/" + case["key"], sel=fl.aslice[0:1])
        blocks.append(bool(got.dtype == want.dtype and np.array_equal(got, want)
                           and np.array_equal(first, want[0:1])))
    results[case["root"]] = {
        "same": bool(whole.dtype == expected.dtype and np.array_equal(whole, expected)),
        "blocks": blocks,
    }
print(json.dumps(results))
"""

# Short last blocks in chunks longer than they are (stored with the full block as maxshape),
# along one axis or two, bool among them; in chunks of at most 1 KiB (small_chunks).
CHUNKED_CASES = [
    ("uint16", (23, 3, 16), (10, 3, 16)),  # chunks of 10 frames, the last block 3
    ("bool", (23, 3, 16), (10, 3, 16)),
    ("int16", (17, 11, 24), (6, 5, 24)),  # chunks (3, 5, 24), the last blocks 5 and 1 long
    ("float32", (9, 14, 7, 10), (4, 14, 3, 10)),
    ("complex64", (11, 33), (4, 33)),
]


@pytest.mark.subprocess
def test_old_package_reads_blocks_chunked_as_the_full_block(tmp_path: Path) -> None:
    """Every writer's files, each block chunked as the dataset's full one, read by the old
    package whole and file by file (flammkuchen, as its reader calls it)."""
    cases = []
    longer = 0
    for writer in sorted(WRITERS):
        for i, (dtype, shape, block) in enumerate(CHUNKED_CASES):
            data = sample_array(shape, dtype, seed=i)
            root = tmp_path / f"{writer}{i}"
            with small_chunks():
                WRITERS[writer](data, block, root)
            ds = sd.SplitDataset(root)
            parts = []
            for name, where in zip(ds.block_names, ds.grid.blocks(), strict=True):
                parts.append(
                    (
                        name,
                        [list(s) for s in (ds.grid.file_extent(a, k) for a, k in enumerate(where))],
                    )
                )
                with h5py.File(root / name, "r") as f:
                    dset = f[ds.data_key]
                    if any(c > n for c, n in zip(dset.chunks, dset.shape, strict=True)):
                        assert dset.maxshape != dset.shape
                        longer += 1
            np.save(tmp_path / f"{writer}{i}.npy", data)
            cases.append(
                {
                    "root": str(root),
                    "expected": str(tmp_path / f"{writer}{i}.npy"),
                    "key": ds.data_key,
                    "blocks": parts,
                }
            )
    assert longer >= 3 * len(WRITERS)  # the layout under test is there
    manifest = tmp_path / "cases.json"
    manifest.write_text(json.dumps(cases))
    out = json.loads(run_old_checked(_OLD_READS_BLOCKS, manifest).stdout)
    for case in cases:
        got = out[case["root"]]
        assert got["same"], case["root"]
        assert got["blocks"] == [True] * len(case["blocks"]), case["root"]


def test_metadata_json_has_the_original_keys_in_order(tmp_path: Path) -> None:
    sd.to_split_dataset(np.zeros((4, 5, 6), np.uint16), tmp_path / "ds", (2,))
    text = (tmp_path / "ds" / "stack_metadata.json").read_text()
    assert list(json.loads(text)) == ORIGINAL_METADATA_KEYS


_OLD_WRITES = r"""
import json, sys, warnings
import numpy as np
from split_dataset import save_to_split_dataset, EmptySplitDataset

out = sys.argv[1]
rng = np.random.default_rng(0)
written = []
for i, (dtype, shape, block, codec) in enumerate(json.loads(sys.argv[2])):
    if dtype == "bool":
        a = rng.random(shape) > 0.5
    else:
        a = (rng.random(shape) * 1000).astype(dtype)
    np.save(f"{out}/old{i}.npy", a)
    kwargs = {} if codec == "default" else {"compression": codec}
    save_to_split_dataset(a, f"{out}/old{i}", block_size=tuple(block), **kwargs)
    written.append(f"{out}/old{i}")
# EmptySplitDataset + save_block_data + finalize (key "stack").
a = (rng.random((10, 6, 7)) * 100).astype("uint16")
np.save(f"{out}/empty.npy", a)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    e = EmptySplitDataset(out, "empty", shape_full=a.shape, shape_block=(4, 6, 7))
for i, (idx, sl) in enumerate(e.slices()):
    e.save_block_data(i, a[sl])
e.finalize()
print(json.dumps(written))
"""

OLD_CASES = [
    ("uint16", (17, 3, 10, 12), (5, 1, 10, 12), "default"),
    ("int16", (9, 20, 21), (4, 7, 21), "blosc"),
    ("float32", (30, 5), (7, 5), "zlib"),
    ("float64", (12, 6, 6), (5, 6, 6), "blosc:zstd"),
    ("bool", (8, 40), (3, 40), "blosc"),
    ("uint8", (5, 5, 5), (2, 2, 2), None),
]


@pytest.mark.subprocess
def test_we_read_what_the_old_package_writes(tmp_path: Path) -> None:
    written = json.loads(
        run_old_checked(_OLD_WRITES, tmp_path, json.dumps(OLD_CASES)).stdout.strip()
    )
    assert len(written) == len(OLD_CASES)
    for i, (dtype, shape, block, _) in enumerate(OLD_CASES):
        expected = np.load(tmp_path / f"old{i}.npy")
        ds = sd.SplitDataset(tmp_path / f"old{i}")
        assert ds.shape == shape
        assert ds.shape_block == block
        assert ds.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(ds[...], expected)
        np.testing.assert_array_equal(ds.to_dask().compute(), expected)
    ds = sd.SplitDataset(tmp_path / "empty")
    assert ds.data_key == "stack"
    np.testing.assert_array_equal(np.asarray(ds), np.load(tmp_path / "empty.npy"))


_OLD_READS = r"""
import json, sys
import numpy as np
from split_dataset import SplitDataset

same = {}
for root, expected in json.loads(sys.argv[1]).items():
    ds = SplitDataset(root)
    whole = ds[tuple(slice(0, n) for n in ds.shape)]
    same[root] = bool(np.array_equal(whole, np.load(expected)))
print(json.dumps(same))
"""


@pytest.mark.subprocess
def test_sealed_datasets_of_the_old_package_read_everywhere(tmp_path: Path) -> None:
    """Sealing leaves the old package's files as they were: it reads them, and so do we."""
    run_old_checked(_OLD_WRITES, tmp_path, json.dumps(OLD_CASES))
    roots = {}
    for i in range(len(OLD_CASES)):
        root = tmp_path / f"old{i}"
        before = {p.name: p.read_bytes() for p in root.iterdir()}
        assert main(["seal", str(root)]) == 0
        assert (root / "splitds-checksums.json").is_file()
        after = {
            p.name: p.read_bytes() for p in root.iterdir() if p.name != "splitds-checksums.json"
        }
        assert after == before
        assert sd.verify(root) == []
        np.testing.assert_array_equal(sd.SplitDataset(root)[...], np.load(tmp_path / f"old{i}.npy"))
        roots[str(root)] = str(tmp_path / f"old{i}.npy")
    out = json.loads(run_old_checked(_OLD_READS, json.dumps(roots)).stdout)
    assert out == dict.fromkeys(roots, True)
