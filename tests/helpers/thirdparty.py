"""A cached virtualenv where third-party code written for split_dataset runs on this package.

It holds this repository (editable), its ``import split_dataset`` alias, fimpy 0.1.4 and
napari-split-dataset 0.3.0, and no ``split-dataset`` distribution: every ``import
split_dataset`` there, in the main process or a worker process, is answered by splitds_dask.

Usage from a test module::

    from tests.helpers.thirdparty import run_thirdparty_checked

    proc = run_thirdparty_checked("import split_dataset; print(split_dataset.SplitDataset)")

The venv is built by :func:`tests.helpers.venvs.cached_venv` with the commands a user types
(README, "Using it under fimpy and napari-split-dataset")::

    python -m venv V
    V/bin/pip install -e <repo>
    V/bin/splitds alias enable
    V/bin/pip install --no-deps fimpy==0.1.4 napari-split-dataset==0.3.0
    V/bin/pip install flammkuchen==1.0.3 joblib scikit-image imageio

* location: ``$SPLITDS_THIRDPARTY_VENV`` if set, else
  ``~/.cache/splitds-dask/thirdparty-venv-py<major><minor>-<version>-<hash>``, the hash being of
  the repository's path, its ``pyproject.toml``, the code that writes the alias's ``.pth`` file
  and the requirements, so that two checkouts (or a changed list of dependencies) never share a
  venv;
* fimpy and napari-split-dataset come without their dependencies (both require
  ``split-dataset``, and fimpy ``numba``, which the functions checked never import); the last
  line installs what those functions do import;
* venvs of the same checkout built for an older hash are removed once the new one is ready;
* the import check fails the build if a ``split-dataset`` distribution is installed or if
  ``import split_dataset`` is not answered by splitds_dask.

If the venv cannot be built, :func:`thirdparty_python` raises ``RuntimeError`` with pip's
output: the tests must fail loudly, never skip.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.helpers.timeouts import TIMEOUT
from tests.helpers.venvs import VenvRecipe, cached_venv, clean_env

__all__ = [
    "REPO_ROOT",
    "THIRDPARTY_NO_DEPS",
    "THIRDPARTY_REQUIREMENTS",
    "run_thirdparty",
    "run_thirdparty_checked",
    "thirdparty_python",
    "thirdparty_venv_dir",
]

#: The checkout whose package the venv installs (editable): the one these tests belong to.
REPO_ROOT = Path(__file__).resolve().parents[2]

#: The programs checked, installed without their dependencies (they require ``split-dataset``).
THIRDPARTY_NO_DEPS = ("fimpy==0.1.4", "napari-split-dataset==0.3.0")

#: What the checked functions import besides split_dataset, numpy and h5py: flammkuchen (fimpy,
#: napari-split-dataset; it brings tables and scipy), joblib (fimpy's workers), scikit-image
#: (``block_reduce`` in fimpy's ``downsample``; it brings tifffile) and imageio (``load_2p``).
THIRDPARTY_REQUIREMENTS = ("flammkuchen==1.0.3", "joblib", "scikit-image", "imageio")

#: What writes the alias's ``.pth`` file: the file written is only as current as this code.
_ALIAS_SOURCES = ("src/splitds_dask/_compat/alias.py",)

#: Bump when the recipe changes in a way the hash does not see.
_CACHE_VERSION = "v2"
_MARKER_NAME = ".splitds-thirdparty-ready.json"

_VERIFY_SCRIPT = """
import json, sys
from importlib import metadata
for name in ("split-dataset", "split_dataset"):
    try:
        found = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        continue
    sys.exit("the distribution %s %s is installed" % (name, found.version))
import splitds_dask, split_dataset
from splitds_dask._compat.alias import alias_status
if not alias_status().active:
    sys.exit(alias_status().describe())
if split_dataset.SplitDataset is not splitds_dask.SplitDataset:
    sys.exit("import split_dataset gives %r, not splitds_dask" % (split_dataset,))
import fimpy.pipeline.common, fimpy.pipeline.general, fimpy.loading.planewise
import napari_split_dataset
print(json.dumps({
    "python": sys.version.split()[0],
    "versions": {
        name: metadata.version(name)
        for name in ("splitds-dask", "fimpy", "napari-split-dataset", "flammkuchen", "numpy",
                     "joblib", "scikit-image", "imageio", "tables", "h5py")
    },
}))
"""


def _requirements() -> list[str]:
    return [*THIRDPARTY_NO_DEPS, *THIRDPARTY_REQUIREMENTS]


def _key() -> dict[str, object]:
    def digest(path: str) -> str:
        return hashlib.sha256((REPO_ROOT / path).read_bytes()).hexdigest()

    return {
        "repo": str(REPO_ROOT),
        "sha256": {path: digest(path) for path in ("pyproject.toml", *_ALIAS_SOURCES)},
        "requirements": _requirements(),
    }


def thirdparty_venv_dir() -> Path:
    """Directory of the cached third-party venv (may not exist yet)."""
    env = os.environ.get("SPLITDS_THIRDPARTY_VENV")
    if env:
        return Path(env).expanduser().resolve()
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    digest = hashlib.sha256(json.dumps(_key(), sort_keys=True).encode()).hexdigest()[:12]
    name = f"thirdparty-venv-{tag}-{_CACHE_VERSION}-{digest}"
    return Path.home() / ".cache" / "splitds-dask" / name


def _commands(venv: Path) -> list[list[object]]:
    pip = [venv / "bin" / "python", "-m", "pip", "install", "--disable-pip-version-check"]
    return [
        [*pip, "--no-input", "-e", str(REPO_ROOT)],
        [venv / "bin" / "splitds", "alias", "enable"],
        [*pip, "--no-input", "--no-deps", *THIRDPARTY_NO_DEPS],
        [*pip, "--no-input", *THIRDPARTY_REQUIREMENTS],
    ]


@functools.cache
def thirdparty_python() -> Path:
    """Python executable of the cached venv with fimpy and napari-split-dataset on the alias.

    Builds the venv on first use (guarded by a file lock); raises ``RuntimeError`` (with pip's
    output) if that fails.
    """
    recipe = VenvRecipe(
        what=f"fimpy and napari-split-dataset on {REPO_ROOT}",
        marker_name=_MARKER_NAME,
        key=_key(),
        commands=_commands,
        verify_script=_VERIFY_SCRIPT,
    )
    python = cached_venv(thirdparty_venv_dir(), recipe)
    if not os.environ.get("SPLITDS_THIRDPARTY_VENV"):
        _remove_stale_venvs(thirdparty_venv_dir())
    return python


def _remove_stale_venvs(current: Path) -> None:
    """Remove the venvs this checkout built for an older key (about 700 MB each): each change of
    pyproject.toml would otherwise leave one behind. Other checkouts' venvs stay."""
    for marker in current.parent.glob(f"thirdparty-venv-*/{_MARKER_NAME}"):
        venv = marker.parent
        try:
            info = json.loads(marker.read_text())
        except (OSError, ValueError):
            continue
        if venv == current or not isinstance(info, dict) or info.get("repo") != str(REPO_ROOT):
            continue
        lock_path = venv.parent / (venv.name + ".lock")
        with open(lock_path, "a+") as lock:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # being built or checked by another process
            shutil.rmtree(venv, ignore_errors=True)
            lock_path.unlink(missing_ok=True)


def run_thirdparty(
    script: str,
    *args: object,
    pythonpath: Sequence[Path] = (),
    timeout: float = TIMEOUT,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -c script *args`` in the third-party venv; never raises on failure.

    ``pythonpath`` goes into ``PYTHONPATH``, which the processes it starts (joblib's, dask's
    workers) inherit.
    """
    env = clean_env()
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    return subprocess.run(
        [str(thirdparty_python()), "-c", script, *(str(a) for a in args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
        check=False,
    )


def run_thirdparty_checked(
    script: str,
    *args: object,
    pythonpath: Sequence[Path] = (),
    timeout: float = TIMEOUT,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Like :func:`run_thirdparty` but raise ``AssertionError`` with the output on failure."""
    proc = run_thirdparty(script, *args, pythonpath=pythonpath, timeout=timeout, cwd=cwd)
    if proc.returncode != 0:
        raise AssertionError(
            f"third-party script failed (exit code {proc.returncode})\n"
            f"--- script ---\n{script}\n--- args ---\n{args!r}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
    return proc


if __name__ == "__main__":
    # `python -m tests.helpers.thirdparty` builds the venv if needed and prints its interpreter.
    print(thirdparty_python())
