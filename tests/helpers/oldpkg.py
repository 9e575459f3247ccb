"""A cached virtualenv holding the *original* split_dataset 0.4.4 (numpy < 2).

Tests use it to check compatibility both ways: files written by this package
must be readable by the old package, and files written by the old package (or
by the programs built on it) must be readable by this one.

Usage from a test module::

    from tests.helpers.oldpkg import old_python, run_old, run_old_checked

    proc = run_old_checked("import split_dataset, sys; print(split_dataset.__version__)")

The venv is built once per interpreter version and cached:

* location: ``$SPLITDS_OLDPKG_VENV`` if set, else
  ``~/.cache/splitds-dask/oldpkg-venv-py<major><minor>-v1``;
* built with ``python -m venv`` from the interpreter running the tests
  (``sys.executable``), then ``pip install "numpy<2" "split-dataset==0.4.4"``
  (which brings flammkuchen and tables);
* a marker file is written only after the install *and* an import check
  succeeded, so an interrupted build is thrown away and rebuilt;
* an exclusive ``fcntl.flock`` on ``<venv>.lock`` serialises concurrent test
  processes (pytest-xdist workers, parallel CI jobs).

If the venv cannot be built, :func:`old_python` raises ``RuntimeError`` with
pip's output: compatibility tests must fail loudly, never skip.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers.timeouts import TIMEOUT

__all__ = [
    "JSONABLE",
    "OLD_REQUIREMENTS",
    "old_python",
    "old_venv_dir",
    "run_old",
    "run_old_checked",
]

#: What the old-package venv must contain.  split-dataset 0.4.4 pulls in
#: flammkuchen and tables; numpy is capped because 0.4.4 (``np.product``) and
#: flammkuchen 1.0.3 (``np.unicode_``) break on numpy 2.
OLD_REQUIREMENTS = ("numpy<2", "split-dataset==0.4.4")

#: Bump when OLD_REQUIREMENTS change, so stale cached venvs are not reused.
_CACHE_VERSION = "v1"
_MARKER_NAME = ".splitds-oldpkg-ready.json"
_BUILD_TIMEOUT = 1800  # seconds, for venv creation + pip install

# The head of scripts that run identically here and in the old venv: ``_j`` makes a JSON-able
# copy of what an API returns (numpy scalars to Python, tuples to lists, slices tagged).
JSONABLE = r"""
import numpy as np


def _j(x):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (list, tuple)):
        return [_j(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, slice):
        return ["slice", _j(x.start), _j(x.stop), _j(x.step)]
    return x
"""

_VERIFY_SCRIPT = """
import json, sys
import numpy, tables, flammkuchen, split_dataset
major = int(numpy.__version__.split(".")[0])
if major >= 2:
    sys.exit("numpy %s is >= 2" % numpy.__version__)
try:
    from importlib.metadata import version
    fl_version = version("flammkuchen")
except Exception:
    fl_version = getattr(flammkuchen, "__version__", "?")
print(json.dumps({
    "python": sys.version.split()[0],
    "numpy": numpy.__version__,
    "tables": tables.__version__,
    "flammkuchen": fl_version,
    "split_dataset": split_dataset.__version__,
}))
"""


def old_venv_dir() -> Path:
    """Directory of the cached old-package venv (may not exist yet)."""
    env = os.environ.get("SPLITDS_OLDPKG_VENV")
    if env:
        return Path(env).expanduser().resolve()
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    return Path.home() / ".cache" / "splitds-dask" / f"oldpkg-venv-{tag}-{_CACHE_VERSION}"


def _venv_python(venv: Path) -> Path:
    if os.name == "nt":  # pragma: no cover - the project runs on POSIX
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def _clean_env() -> dict[str, str]:
    """Environment for subprocesses of the old venv.

    Drops variables that would make the old interpreter pick up the test
    interpreter's packages (or another venv) instead of its own.
    """
    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "PYTHONUSERBASE"):
        env.pop(var, None)
    env["PYTHONNOUSERSITE"] = "1"
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    return env


def _run(cmd: list[str], log: list[str], timeout: float = _BUILD_TIMEOUT) -> int:
    log.append("$ " + " ".join(str(c) for c in cmd))
    try:
        proc = subprocess.run(
            [str(c) for c in cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_clean_env(),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.append(f"failed to run: {exc!r}")
        return -1
    if proc.stdout:
        log.append(proc.stdout.rstrip())
    if proc.stderr:
        log.append(proc.stderr.rstrip())
    log.append(f"(exit code {proc.returncode})")
    return proc.returncode


def _verify(python: Path, log: list[str]) -> dict | None:
    """Import check inside the venv; returns the version dict or None."""
    if not python.exists():
        log.append(f"{python} does not exist")
        return None
    try:
        proc = subprocess.run(
            [str(python), "-c", _VERIFY_SCRIPT],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=_clean_env(),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.append(f"verification could not run: {exc!r}")
        return None
    log.append("$ <verify imports>")
    log.append((proc.stdout + proc.stderr).rstrip())
    if proc.returncode != 0:
        return None
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def _marker_ok(venv: Path) -> bool:
    marker = venv / _MARKER_NAME
    if not marker.is_file() or not _venv_python(venv).exists():
        return False
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return info.get("requirements") == list(OLD_REQUIREMENTS)


def _build(venv: Path) -> None:
    log: list[str] = []
    if venv.exists():
        # Half-built (no marker) or stale: start from scratch.
        shutil.rmtree(venv, ignore_errors=True)
    rc = _run([sys.executable, "-m", "venv", str(venv)], log)
    python = _venv_python(venv)
    if rc == 0:
        rc = _run(
            [
                python,
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                *OLD_REQUIREMENTS,
            ],
            log,
        )
    info = _verify(python, log) if rc == 0 else None
    if info is None:
        raise RuntimeError(
            "Could not build the old split_dataset virtualenv at "
            f"{venv} (requirements: {', '.join(OLD_REQUIREMENTS)}).\n" + "\n".join(log)
        )
    info["requirements"] = list(OLD_REQUIREMENTS)
    info["built_with"] = sys.executable
    tmp = venv / (_MARKER_NAME + ".tmp")
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, venv / _MARKER_NAME)


@functools.cache
def old_python() -> Path:
    """Python executable of the cached venv with split_dataset 0.4.4 and numpy < 2.

    Builds the venv on first use (guarded by a file lock); raises
    ``RuntimeError`` (with pip's output) if that fails.
    """
    venv = old_venv_dir()
    venv.parent.mkdir(parents=True, exist_ok=True)
    lock_path = venv.parent / (venv.name + ".lock")
    with open(lock_path, "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            if not _marker_ok(venv):
                _build(venv)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    return _venv_python(venv)


def run_old(
    script: str,
    *args: object,
    timeout: float = TIMEOUT,
    cwd: str | os.PathLike | None = None,
) -> subprocess.CompletedProcess:
    """Run ``python -c script *args`` in the old venv; never raises on failure."""
    return subprocess.run(
        [str(old_python()), "-c", script, *(str(a) for a in args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=_clean_env(),
        check=False,
    )


def run_old_checked(
    script: str,
    *args: object,
    timeout: float = TIMEOUT,
    cwd: str | os.PathLike | None = None,
) -> subprocess.CompletedProcess:
    """Like :func:`run_old` but raise ``AssertionError`` with the output on failure."""
    proc = run_old(script, *args, timeout=timeout, cwd=cwd)
    if proc.returncode != 0:
        raise AssertionError(
            f"old-package script failed (exit code {proc.returncode})\n"
            f"--- script ---\n{script}\n--- args ---\n{args!r}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
    return proc


if __name__ == "__main__":
    # `python -m tests.helpers.oldpkg` builds the venv if needed and prints its interpreter.
    print(old_python())
