"""The entry points ``pyproject.toml`` declares, visible even when the package is not installed.

xarray finds the ``splitds`` engine and npe2 finds the napari manifest through
``importlib.metadata`` entry points, which exist only for an installed distribution. CI installs
the package (``pip install -e ".[dev]"``); a checkout run with ``PYTHONPATH=src`` has no
installed metadata. :func:`ensure_entry_points` then writes the ``.dist-info`` folder that
installing would write (``METADATA`` and ``entry_points.txt``, from the entry-point tables of
``pyproject.toml`` as they are) and puts it on ``sys.path``, so the tests exercise the very
strings a wheel would register.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    from pip._vendor import tomli as tomllib  # type: ignore[no-redef]

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"


def declared_entry_points() -> dict[str, dict[str, str]]:
    """``{group: {name: value}}`` from ``[project.entry-points]``."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    return project.get("entry-points", {})


def _registered(group: str, name: str, value: str) -> bool:
    return any(
        ep.name == name and ep.value == value for ep in importlib.metadata.entry_points(group=group)
    )


def ensure_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Make the declared entry points discoverable; True if a ``.dist-info`` had to be written."""
    declared = declared_entry_points()
    if all(
        _registered(group, name, value)
        for group, entries in declared.items()
        for name, value in entries.items()
    ):
        return False
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    info = tmp_path / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    # Requires-Dist as a wheel lists them: bioio reads a reader plugin's bioio-base requirement.
    requires = [*project.get("dependencies", [])]
    for extra, entries in project.get("optional-dependencies", {}).items():
        requires.extend(f'{entry}; extra == "{extra}"' for entry in entries)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
        + "".join(f"Requires-Dist: {entry}\n" for entry in requires)
    )
    lines = []
    for group, entries in declared.items():
        lines.append(f"[{group}]")
        lines.extend(f"{name} = {value}" for name, value in entries.items())
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return True
