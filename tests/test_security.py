"""Files carrying pickles never execute code when we open or read them.

The payloads are made by PyTables/flammkuchen in the old package's venv, exactly as they occur in
the wild (a pickled root attribute, an object node in place of the data, a pickled member of the
legacy in-file metadata). Each payload's only effect is to create a marker file. Every test first
shows that the original package *does* run the payload, so the test can fail.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import splitds_dask as sd
from tests.helpers.oldpkg import run_old, run_old_checked

_MAKE = r"""
import json, sys, warnings
import numpy as np
import flammkuchen as fl
import tables

kind, folder, marker = sys.argv[1], sys.argv[2], sys.argv[3]


class Payload:
    # Harmless: unpickling opens (creates) the marker file.
    def __reduce__(self):
        return (open, (marker, "w"))


data = np.arange(4 * 5 * 6, dtype="uint16").reshape(4, 5, 6)
np.save(folder + ".npy", data)
meta = {"shape_full": [4, 5, 6], "shape_block": [2, 5, 6]}
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    for i in range(2):
        path = f"{folder}/{i:04d}.h5"
        block = data[2 * i: 2 * i + 2]
        if kind == "object_node":
            fl.save(path, {"stack_3D": fl.ForcePickle(Payload())})
        elif kind == "legacy":
            fl.save(path, {"stack_3D": block, "stack_metadata": {
                "full_size": (4, 5, 6), "block_size": (2, 5, 6), "files": ["0000.h5", "0001.h5"],
                "evil": fl.ForcePickle(Payload())}})
        else:
            fl.save(path, {"stack_3D": block})
            with tables.open_file(path, "a") as f:
                f.root._v_attrs.evil = Payload()
                f.root.stack_3D._v_attrs.evil = Payload()
if kind != "legacy":
    json.dump(meta, open(f"{folder}/stack_metadata.json", "w"))
"""

_OLD_OPEN = r"""
import sys, os
from split_dataset import SplitDataset
kind, folder = sys.argv[1], sys.argv[2]
try:
    ds = SplitDataset(folder, prefix="" if kind == "legacy" else None)
    ds.data_key
    ds[0:4, :, :]
except Exception as exc:
    print(type(exc).__name__, exc)
"""


@pytest.fixture(scope="module")
def payload_datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    base = tmp_path_factory.mktemp("pickles")
    out = {}
    for kind in ("attribute", "object_node", "legacy"):
        folder = base / kind
        folder.mkdir()
        marker = base / f"{kind}.marker"
        run_old_checked(_MAKE, kind, folder, marker)
        assert not marker.exists(), "making the payload must not trigger it"
        out[kind] = (folder, marker)
    return out


@pytest.mark.subprocess
@pytest.mark.parametrize("kind", ["attribute", "object_node", "legacy"])
def test_the_original_package_runs_the_payload(payload_datasets, kind: str, tmp_path) -> None:
    folder, marker = payload_datasets[kind]
    marker.unlink(missing_ok=True)
    # A copy: the original's legacy path writes a json into the folder it opens.
    copy = shutil.copytree(folder, tmp_path / kind)
    run_old(_OLD_OPEN, kind, copy)
    assert marker.exists(), f"the {kind} payload is not live: the test below would prove nothing"
    marker.unlink()


@pytest.mark.subprocess
def test_pickled_attributes_are_never_unpickled(payload_datasets) -> None:
    folder, marker = payload_datasets["attribute"]
    marker.unlink(missing_ok=True)
    ds = sd.SplitDataset(folder)
    np.testing.assert_array_equal(ds[...], np.load(f"{folder}.npy"))
    np.testing.assert_array_equal(ds.to_dask().compute(), np.load(f"{folder}.npy"))
    assert not marker.exists()


@pytest.mark.subprocess
def test_object_node_in_place_of_data_is_an_error_not_code(payload_datasets) -> None:
    folder, marker = payload_datasets["object_node"]
    marker.unlink(missing_ok=True)
    ds = sd.SplitDataset(folder)
    with pytest.raises(sd.SplitDatasetError, match=r"0000\.h5"):
        ds[...]
    assert not marker.exists()


@pytest.mark.subprocess
def test_legacy_metadata_with_a_pickle_opens_from_integers_only(payload_datasets) -> None:
    folder, marker = payload_datasets["legacy"]
    marker.unlink(missing_ok=True)
    listing = sorted(p.name for p in folder.iterdir())
    ds = sd.SplitDataset(folder)
    assert ds.shape == (4, 5, 6)
    np.testing.assert_array_equal(ds[...], np.load(f"{folder}.npy"))
    assert not marker.exists()
    assert sorted(p.name for p in folder.iterdir()) == listing, "opening wrote into the folder"
    assert json.dumps(ds.metadata)  # only plain values
