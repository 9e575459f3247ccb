"""Cached virtualenvs built once from the package index, for tests that run other installs.

:mod:`tests.helpers.oldpkg` (the original split_dataset 0.4.4) and :mod:`tests.helpers.thirdparty`
(fimpy and napari-split-dataset on top of this package's alias) both use :func:`cached_venv`:

* the venv is made with ``python -m venv`` from the interpreter running the tests
  (``sys.executable``), then the recipe's commands run in order, stopping at the first failure;
* a marker file is written only after every command *and* an import check succeeded, so an
  interrupted or failed build is thrown away and rebuilt on the next use;
* an exclusive ``fcntl.flock`` on ``<venv>.lock`` serialises concurrent test processes
  (pytest-xdist workers, parallel CI jobs);
* if the venv cannot be built, ``RuntimeError`` is raised with the output of every command:
  the tests that need it must fail loudly, never skip.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers.timeouts import TIMEOUT

__all__ = ["VenvRecipe", "cached_venv", "clean_env", "venv_python"]

BUILD_TIMEOUT = 1800  # seconds, for each command of a build (venv creation, a pip install)


@dataclass(frozen=True)
class VenvRecipe:
    """How to build and check one cached venv.

    Attributes
    ----------
    what : str
        What the venv holds, for the error message of a failed build.
    marker_name : str
        Name of the marker file written in the venv once it is built and checked.
    key : Mapping[str, Any]
        JSON-able entries stored in the marker; a marker whose entries differ is stale.
    commands : Callable[[Path], Sequence[Sequence[object]]]
        The commands run after ``python -m venv``, given the venv's folder.
    verify_script : str
        Python run by the venv's interpreter once built: it must exit 0 and print a JSON object
        (stored in the marker) on its last line of output.
    """

    what: str
    marker_name: str
    key: Mapping[str, Any]
    commands: Callable[[Path], Sequence[Sequence[object]]]
    verify_script: str


def venv_python(venv: Path) -> Path:
    """The interpreter of the venv at ``venv``."""
    if os.name == "nt":  # pragma: no cover - the project runs on POSIX
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def clean_env() -> dict[str, str]:
    """Environment for subprocesses of another venv (a cached one, or a test's own).

    Drops variables that would make its interpreter pick up the test interpreter's packages (or
    another venv) instead of its own.
    """
    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "PYTHONUSERBASE"):
        env.pop(var, None)
    env["PYTHONNOUSERSITE"] = "1"
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    return env


def _logged(
    cmd: Sequence[object], log: list[str], timeout: float
) -> subprocess.CompletedProcess[str] | None:
    """Run ``cmd`` in :func:`clean_env`, its output appended to ``log``; None if it cannot run."""
    try:
        proc = subprocess.run(
            [str(c) for c in cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=clean_env(),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.append(f"failed to run: {exc!r}")
        return None
    if proc.stdout:
        log.append(proc.stdout.rstrip())
    if proc.stderr:
        log.append(proc.stderr.rstrip())
    log.append(f"(exit code {proc.returncode})")
    return proc


def _run(cmd: Sequence[object], log: list[str], timeout: float = BUILD_TIMEOUT) -> int:
    log.append("$ " + " ".join(str(c) for c in cmd))
    proc = _logged(cmd, log, timeout)
    return -1 if proc is None else proc.returncode


def _verify(python: Path, script: str, log: list[str]) -> dict[str, Any] | None:
    """Import check inside the venv; returns what it printed, or None."""
    if not python.exists():
        log.append(f"{python} does not exist")
        return None
    log.append("$ <verify imports>")
    proc = _logged([python, "-c", script], log, TIMEOUT)
    if proc is None or proc.returncode != 0:
        return None
    try:
        info = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    return info if isinstance(info, dict) else None


def _marker_ok(venv: Path, recipe: VenvRecipe) -> bool:
    marker = venv / recipe.marker_name
    if not marker.is_file() or not venv_python(venv).exists():
        return False
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    # Through JSON, so that tuples in the key compare equal to the lists read back.
    key = json.loads(json.dumps(dict(recipe.key)))
    return isinstance(info, dict) and all(info.get(k) == v for k, v in key.items())


def _build(venv: Path, recipe: VenvRecipe) -> None:
    log: list[str] = []
    if venv.exists():
        # Half-built (no marker) or stale: start from scratch.
        shutil.rmtree(venv, ignore_errors=True)
    rc = _run([sys.executable, "-m", "venv", venv], log)
    for cmd in recipe.commands(venv) if rc == 0 else ():
        rc = _run(cmd, log)
        if rc != 0:
            break
    python = venv_python(venv)
    info = _verify(python, recipe.verify_script, log) if rc == 0 else None
    if info is None:
        raise RuntimeError(
            f"Could not build the virtualenv of {recipe.what} at {venv}.\n" + "\n".join(log)
        )
    info.update(json.loads(json.dumps(dict(recipe.key))))
    info["built_with"] = sys.executable
    tmp = venv / (recipe.marker_name + ".tmp")
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, venv / recipe.marker_name)


def cached_venv(venv: Path, recipe: VenvRecipe) -> Path:
    """The interpreter of the venv at ``venv``, built by ``recipe`` unless already built.

    The build runs under a file lock beside the venv; it raises ``RuntimeError`` (with the
    output of every command) if any step or the import check fails.
    """
    venv.parent.mkdir(parents=True, exist_ok=True)
    lock_path = venv.parent / (venv.name + ".lock")
    with open(lock_path, "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            if not _marker_ok(venv, recipe):
                _build(venv, recipe)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    return venv_python(venv)
