"""The cached virtualenvs of the tests (tests/helpers/venvs.py): built once, rebuilt when their
key changes, a failed build loud and never marked ready."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.helpers.thirdparty import REPO_ROOT, _remove_stale_venvs
from tests.helpers.venvs import VenvRecipe, cached_venv

_PRINTS_JSON = "import json, sys; print(json.dumps({'python': sys.version.split()[0]}))"


def _recipe(key: str, command: str = "print('installed')") -> VenvRecipe:
    return VenvRecipe(
        what="a test venv",
        marker_name=".ready.json",
        key={"key": key},
        commands=lambda venv: [[venv / "bin" / "python", "-c", command]],
        verify_script=_PRINTS_JSON,
    )


@pytest.mark.subprocess
@pytest.mark.slow
def test_cached_venv_builds_once_rebuilds_on_a_new_key_and_fails_loudly(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    failing = _recipe("a", "import sys; print('pip says no'); sys.exit(3)")
    with pytest.raises(RuntimeError, match=r"(?s)a test venv.*pip says no.*exit code 3"):
        cached_venv(venv, failing)
    assert not (venv / ".ready.json").exists()

    python = cached_venv(venv, _recipe("a"))
    marker = json.loads((venv / ".ready.json").read_text())
    assert marker["key"] == "a"
    assert marker["python"] == sys.version.split()[0]
    (venv / "sentinel").touch()
    assert cached_venv(venv, _recipe("a")) == python
    assert (venv / "sentinel").exists()  # not rebuilt

    cached_venv(venv, _recipe("b"))
    assert not (venv / "sentinel").exists()  # rebuilt for the new key
    assert json.loads((venv / ".ready.json").read_text())["key"] == "b"


def test_stale_thirdparty_venvs_of_this_checkout_are_removed(tmp_path: Path) -> None:
    def venv(name: str, repo: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        marker = {"repo": repo, "requirements": []}
        (folder / ".splitds-thirdparty-ready.json").write_text(json.dumps(marker))
        return folder

    current = venv("thirdparty-venv-py311-v1-new", str(REPO_ROOT))
    stale = venv("thirdparty-venv-py311-v1-old", str(REPO_ROOT))
    other = venv("thirdparty-venv-py311-v1-other", "/elsewhere/checkout")
    unrelated = tmp_path / "oldpkg-venv-py311-v1"
    unrelated.mkdir()
    _remove_stale_venvs(current)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [current.name, other.name, unrelated.name]
    )
    assert not stale.exists()
