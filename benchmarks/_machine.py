"""A description of the machine and the software versions, printed above the table."""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

__all__ = ["describe", "format_machine"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gb() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return float("nan")


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _old_versions() -> dict[str, Any]:
    # _MARKER_NAME: the marker the old venv's build writes
    from tests.helpers.oldpkg import _MARKER_NAME, old_python

    marker = old_python().parent.parent / _MARKER_NAME
    info = json.loads(marker.read_text())
    return {k: info.get(k) for k in ("split_dataset", "numpy", "tables", "flammkuchen")}


def describe() -> dict[str, Any]:
    import h5py

    import splitds_dask

    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gb": round(_ram_gb(), 1),
        "kernel": platform.release(),
        "libc": " ".join(platform.libc_ver()),
        "python": sys.version.split()[0],
        "numpy": _version("numpy"),
        "dask": _version("dask"),
        "distributed": _version("distributed"),
        "h5py": _version("h5py"),
        "hdf5": h5py.version.hdf5_version,
        "hdf5plugin": _version("hdf5plugin"),
        "zarr": _version("zarr"),
        "numcodecs": _version("numcodecs"),
        "splitds_dask": f"{splitds_dask.__version__} from {os.path.dirname(splitds_dask.__file__)}",
        "old venv": _old_versions(),
        "load average at start": os.getloadavg(),
    }


def format_machine(info: dict[str, Any]) -> str:
    old = info["old venv"]
    return "\n".join(
        [
            (
                f"- CPU: {info['cpu']}, {info['cores']} cores; RAM {info['ram_gb']} GB; "
                f"Linux {info['kernel']}, {info['libc']}"
            ),
            (
                f"- python {info['python']}, numpy {info['numpy']}, dask {info['dask']}, "
                f"distributed {info['distributed']}, h5py {info['h5py']} "
                f"(HDF5 {info['hdf5']}), hdf5plugin {info['hdf5plugin']}, zarr {info['zarr']}, "
                f"numcodecs {info['numcodecs']}"
            ),
            f"- splitds_dask {info['splitds_dask']}",
            (
                f"- old peer: split_dataset {old['split_dataset']} (numpy {old['numpy']}, "
                f"tables {old['tables']}, flammkuchen {old['flammkuchen']})"
            ),
            "- load average at start: "
            + ", ".join(f"{x:.2f}" for x in info["load average at start"])
            + (
                "; at end: " + ", ".join(f"{x:.2f}" for x in info["load average at end"])
                if "load average at end" in info
                else ""
            ),
        ]
    )
