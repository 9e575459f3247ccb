"""The old split_dataset 0.4.4 venv used by the compatibility tests can be built."""

import json
from pathlib import Path

import pytest

from tests.helpers.oldpkg import old_python, run_old_checked


@pytest.mark.subprocess
def test_old_package_venv_builds():
    python = old_python()
    assert python.exists()
    proc = run_old_checked(
        "import json, numpy, split_dataset, flammkuchen, tables\n"
        "print(json.dumps({'numpy': numpy.__version__,"
        " 'split_dataset': split_dataset.__version__}))"
    )
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert int(info["numpy"].split(".")[0]) < 2, info
    assert info["split_dataset"] == "0.4.4", info


@pytest.mark.subprocess
def test_committed_legacy_fixtures_behave_as_documented_with_old_package():
    """The old package reads/fails on each committed fixture as the manifest says."""
    fixtures = Path(__file__).resolve().parent / "fixtures"
    proc = run_old_checked(
        "import runpy, sys\n"
        "sys.argv = sys.argv[1:]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n",
        fixtures / "check_legacy_with_oldpkg.py",
        fixtures / "legacy",
    )
    assert "all outcomes match the reference" in proc.stdout, proc.stdout
