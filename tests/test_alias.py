"""The ``split_dataset`` alias (``splitds alias``): which modules it answers, in which processes,
and that it never shadows a real split-dataset.

In-process tests install the finder into this interpreter (restored after each test). The
process tests use a real virtual environment made in ``tmp_path`` whose site-packages sees this
one's (a ``.pth`` file adding it), so that ``splitds alias enable`` writes into *its*
site-packages and every interpreter started from it, workers included, runs that file as a
user's environment would.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import sysconfig
import textwrap
import venv
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

import _splitds_dask_alias as hook
import splitds_dask
from splitds_dask._compat.alias import (
    PTH_LINE,
    PTH_NAME,
    AliasError,
    alias_status,
    disable_alias,
    enable_alias,
)
from tests.helpers.timeouts import TIMEOUT
from tests.helpers.venvs import clean_env

_ALIAS_NAMES = ("split_dataset", "split_dataset.blocks", "split_dataset.split_dataset")


@pytest.fixture
def isolated_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This interpreter's import state, restored after the test (finders, path, modules)."""
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in _ALIAS_NAMES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    importlib.invalidate_caches()
    yield
    for name in _ALIAS_NAMES:
        sys.modules.pop(name, None)
    importlib.invalidate_caches()


def _write_original(folder: Path) -> Path:
    """A stand-in for a real split-dataset: a package ``split_dataset`` with a ``blocks`` module."""
    package = folder / "split_dataset"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("REAL = True\n")
    (package / "blocks.py").write_text("REAL_BLOCKS = True\n")
    return package


# -- the finder, in this interpreter ------------------------------------------------------------


@pytest.mark.usefixtures("isolated_imports")
def test_without_the_finder_split_dataset_is_not_importable() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("split_dataset")


@pytest.mark.usefixtures("isolated_imports")
@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("split_dataset", ("Blocks", "EmptySplitDataset", "SplitDataset", "save_to_split_dataset")),
        ("split_dataset.blocks", ("Blocks",)),
        (
            "split_dataset.split_dataset",
            ("Blocks", "EmptySplitDataset", "SplitDataset", "save_to_split_dataset"),
        ),
    ],
)
def test_each_module_of_the_original_gives_the_splitds_dask_objects(
    module: str, names: tuple[str, ...]
) -> None:
    hook.install()
    imported = importlib.import_module(module)
    assert hook.is_alias(imported)
    for name in names:
        assert getattr(imported, name) is getattr(splitds_dask, name)


@pytest.mark.usefixtures("isolated_imports")
def test_the_package_has_its_submodules_as_attributes_and_the_original_api_version() -> None:
    hook.install()
    import split_dataset  # type: ignore[import-not-found]

    assert split_dataset.blocks.Blocks is splitds_dask.Blocks
    assert split_dataset.split_dataset.SplitDataset is splitds_dask.SplitDataset
    assert split_dataset.__version__.startswith("0.4.4+")
    assert "splitds-dask" in repr(split_dataset)
    # Code written for the original pickles what it imported: the objects are splitds-dask's.
    assert split_dataset.SplitDataset.__module__ == "splitds_dask"


@pytest.mark.usefixtures("isolated_imports")
def test_a_folder_named_split_dataset_is_not_taken_for_the_original(tmp_path: Path) -> None:
    (tmp_path / "split_dataset").mkdir()  # say, a data folder in the working directory
    sys.path.insert(0, str(tmp_path))
    assert importlib.import_module("split_dataset").__path__  # without the finder: a namespace
    del sys.modules["split_dataset"]
    hook.install()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hook.is_alias(importlib.import_module("split_dataset"))
    assert alias_status(site_dir=tmp_path).original is None


@pytest.mark.usefixtures("isolated_imports")
def test_install_twice_puts_one_finder() -> None:
    hook.install()
    hook.install()
    assert sum(type(f).__name__ == "_AliasFinder" for f in sys.meta_path) == 1


@pytest.mark.usefixtures("isolated_imports")
def test_a_real_split_dataset_wins_and_the_finder_says_so(tmp_path: Path) -> None:
    package = _write_original(tmp_path)
    sys.path.insert(0, str(tmp_path))
    hook.install()
    with pytest.warns(hook.SplitDatasetAliasWarning, match="split-dataset at .*is imported"):
        real = importlib.import_module("split_dataset")
    assert real.REAL is True
    assert not hook.is_alias(real)
    assert str(package) in str(real.__file__)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # its submodules are its own, without a second warning
        assert importlib.import_module("split_dataset.blocks").REAL_BLOCKS is True


# -- enable, disable, status (one site-packages folder) ------------------------------------------


@pytest.mark.usefixtures("isolated_imports")
def test_enable_writes_one_line_and_disable_removes_it(tmp_path: Path) -> None:
    assert alias_status(site_dir=tmp_path).enabled is False
    status = enable_alias(site_dir=tmp_path)
    assert status.enabled
    assert status.active
    assert status.original is None
    assert (tmp_path / PTH_NAME).read_text() == PTH_LINE
    assert sorted(p.name for p in tmp_path.iterdir()) == [PTH_NAME]  # no staging file left
    assert enable_alias(site_dir=tmp_path).enabled  # twice is once
    assert "every process" in alias_status(site_dir=tmp_path).describe()
    status = disable_alias(site_dir=tmp_path)
    assert not status.enabled
    assert not (tmp_path / PTH_NAME).exists()
    assert disable_alias(site_dir=tmp_path).enabled is False  # twice is once
    assert "disabled" in alias_status(site_dir=tmp_path).describe()


@pytest.mark.usefixtures("isolated_imports")
def test_enable_makes_this_interpreter_answer_at_once(tmp_path: Path) -> None:
    enable_alias(site_dir=tmp_path)
    assert importlib.import_module("split_dataset").SplitDataset is splitds_dask.SplitDataset


@pytest.mark.usefixtures("isolated_imports")
def test_enable_is_refused_while_a_real_split_dataset_is_importable(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    _write_original(tmp_path / "elsewhere")
    sys.path.insert(0, str(tmp_path / "elsewhere"))
    with pytest.raises(AliasError, match=r"elsewhere.*never shadows") as caught:
        enable_alias(site_dir=site)
    assert "\n" not in str(caught.value)
    assert list(site.iterdir()) == []
    status = alias_status(site_dir=site)
    assert status.original is not None
    assert "elsewhere" in status.original.location
    assert not status.active
    assert "real split-dataset" in status.describe()


@pytest.mark.usefixtures("isolated_imports")
def test_enable_into_a_folder_that_is_not_there_is_one_line_naming_it(tmp_path: Path) -> None:
    with pytest.raises(AliasError, match=r"missing: no such site-packages folder$"):
        enable_alias(site_dir=tmp_path / "missing")


# -- every interpreter of an environment ---------------------------------------------------------


class Environment(NamedTuple):
    """A virtual environment that sees this one's packages."""

    python: Path
    site_packages: Path


def _run(env: Environment, code: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(env.python), "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=clean_env(),
        cwd=env.site_packages.parent,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )


def _splitds(env: Environment, *args: str) -> subprocess.CompletedProcess[str]:
    return _run(env, f"from splitds_dask._cli import main; raise SystemExit(main({list(args)!r}))")


@pytest.fixture
def environment(tmp_path: Path) -> Environment:
    """A new virtual environment whose site-packages adds this interpreter's (first in order)."""
    folder = tmp_path / "env"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(folder)
    python = folder / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
            timeout=TIMEOUT,
        ).stdout.strip()
    )
    ours = sysconfig.get_path("purelib")
    # Run before the alias's file (names are run in order): this environment's packages, with
    # their own .pth files (the editable install's) processed.
    (site / "00-parent-environment.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    return Environment(python=python, site_packages=site)


# What an interpreter start must not import once the alias is enabled: the package and its
# dependencies, and the standard library's heavier modules (importlib.abc alone brings pathlib,
# tempfile, typing...: several milliseconds at every start).
_NOT_AT_START = (
    "numpy",
    "dask",
    "h5py",
    "splitds_dask",
    "split_dataset",
    "importlib.abc",
    "importlib.util",
    "pathlib",
    "typing",
)
_IMPORTS_AT_START = f"""
import sys
print(sorted(m for m in {_NOT_AT_START!r} if m in sys.modules))
"""


@pytest.mark.subprocess
def test_enable_then_disable_in_a_real_environment(environment: Environment) -> None:
    before = _run(environment, "import split_dataset")
    assert before.returncode == 1
    assert "No module named 'split_dataset'" in before.stderr

    enabled = _splitds(environment, "alias", "enable")
    assert enabled.returncode == 0, enabled.stderr
    assert str(environment.site_packages / PTH_NAME) in enabled.stdout
    assert (environment.site_packages / PTH_NAME).read_text() == PTH_LINE

    after = _run(
        environment,
        """
        from split_dataset import Blocks, EmptySplitDataset, SplitDataset
        from split_dataset.blocks import Blocks as B2
        import splitds_dask
        assert SplitDataset is splitds_dask.SplitDataset and B2 is Blocks
        print("ok")
        """,
    )
    assert after.returncode == 0, after.stderr
    assert after.stdout.strip() == "ok"
    status = _splitds(environment, "alias", "status")
    assert status.returncode == 0
    assert "gives splitds-dask in every process" in status.stdout

    # The file runs at every start: it imports no more than the interpreter has loaded anyway.
    start = _run(environment, _IMPORTS_AT_START)
    assert "_splitds_dask_alias" in _run(environment, "import sys; print(list(sys.modules))").stdout
    assert start.returncode == 0
    assert start.stderr == ""
    assert json.loads(start.stdout.replace("'", '"')) == []

    disabled = _splitds(environment, "alias", "disable")
    assert disabled.returncode == 0
    assert "disabled" in disabled.stdout
    assert not (environment.site_packages / PTH_NAME).exists()
    again = _run(environment, "import split_dataset")
    assert again.returncode == 1
    assert "No module named 'split_dataset'" in again.stderr


# Each way a program starts worker processes: each worker reports its pid and what
# ``import split_dataset`` gave it.
_WORKERS = """
import json, os, sys


def probe(_):
    import split_dataset
    return [os.getpid(), split_dataset.SplitDataset.__module__, split_dataset.__version__]


if __name__ == "__main__":
    how = sys.argv[1]
    if how in ("spawn", "forkserver"):
        import multiprocessing
        with multiprocessing.get_context(how).Pool(2) as pool:
            found = pool.map(probe, range(4))
    elif how == "loky":
        from joblib import Parallel, delayed
        found = Parallel(n_jobs=2, backend="loky")(delayed(probe)(i) for i in range(4))
    elif how == "dask":
        from distributed import Client, LocalCluster
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster, Client(cluster) as client:
            found = client.gather(client.map(probe, range(4)))
    print(json.dumps({"parent": os.getpid(), "found": found}))
"""


@pytest.mark.subprocess
@pytest.mark.slow
@pytest.mark.parametrize(
    "how", ["spawn", "forkserver", "loky", pytest.param("dask", marks=pytest.mark.cluster)]
)
def test_worker_processes_of_the_environment_answer(
    environment: Environment, tmp_path: Path, how: str
) -> None:
    assert _splitds(environment, "alias", "enable").returncode == 0
    script = tmp_path / "workers.py"
    script.write_text(_WORKERS)
    proc = subprocess.run(
        [str(environment.python), str(script), how],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=tmp_path,
        env=clean_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    pids = {pid for pid, _, _ in result["found"]}
    assert result["parent"] not in pids
    assert len(result["found"]) == 4
    assert {(module, version) for _, module, version in result["found"]} == {
        ("splitds_dask", hook.ALIAS_VERSION)
    }


@pytest.mark.subprocess
def test_a_real_split_dataset_installed_later_wins_with_a_warning(
    environment: Environment,
) -> None:
    assert _splitds(environment, "alias", "enable").returncode == 0
    package = _write_original(environment.site_packages)
    proc = _run(environment, "import split_dataset; print(split_dataset.REAL)")
    assert proc.returncode == 0
    assert proc.stdout.strip() == "True"
    assert "SplitDatasetAliasWarning" in proc.stderr
    assert str(package) in proc.stderr
    status = _splitds(environment, "alias", "status")
    assert "it wins over the alias" in status.stdout
    # Enabling again is refused, one line naming where the real one is.
    refused = _splitds(environment, "alias", "enable")
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1
    assert str(package) in refused.stderr


@pytest.mark.subprocess
def test_the_file_left_after_uninstalling_splitds_dask_prints_nothing(
    environment: Environment,
) -> None:
    assert _splitds(environment, "alias", "enable").returncode == 0
    # As after 'pip uninstall splitds-dask': the file is there, the module it names is not.
    (environment.site_packages / "00-parent-environment.pth").unlink()
    proc = _run(environment, "print('started')")
    assert proc.returncode == 0
    assert proc.stdout == "started\n"
    assert proc.stderr == ""
    missing = _run(environment, "import split_dataset")
    assert "No module named 'split_dataset'" in missing.stderr
