"""A cached virtualenv holding the *original* split_dataset 0.4.4 (numpy < 2).

Tests use it to check compatibility both ways: files written by this package
must be readable by the old package, and files written by the old package (or
by the programs built on it) must be readable by this one.

Usage from a test module::

    from tests.helpers.oldpkg import old_python, run_old, run_old_checked

    proc = run_old_checked("import split_dataset, sys; print(split_dataset.__version__)")

The venv is built once per interpreter version and cached (by
:func:`tests.helpers.venvs.cached_venv`):

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

import functools
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.timeouts import TIMEOUT
from tests.helpers.venvs import VenvRecipe, cached_venv, clean_env

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


def _install(venv: Path) -> list[list[object]]:
    pip = [venv / "bin" / "python", "-m", "pip", "install", "--disable-pip-version-check"]
    return [[*pip, "--no-input", *OLD_REQUIREMENTS]]


_RECIPE = VenvRecipe(
    what=f"the old split_dataset (requirements: {', '.join(OLD_REQUIREMENTS)})",
    marker_name=_MARKER_NAME,
    key={"requirements": list(OLD_REQUIREMENTS)},
    commands=_install,
    verify_script=_VERIFY_SCRIPT,
)


@functools.cache
def old_python() -> Path:
    """Python executable of the cached venv with split_dataset 0.4.4 and numpy < 2.

    Builds the venv on first use (guarded by a file lock); raises
    ``RuntimeError`` (with pip's output) if that fails.
    """
    return cached_venv(old_venv_dir(), _RECIPE)


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
        env=clean_env(),
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
