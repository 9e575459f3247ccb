"""The library never imports the command line (``splitds_dask._cli``): checked by importing every
other module in a fresh process, and by reading every import statement of the library."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import splitds_dask
from tests.helpers.cli import package_env

PACKAGE = Path(splitds_dask.__file__).parent
CLI = "splitds_dask._cli"

# Imports the package and every module under it except the _cli package (pkgutil.walk_packages
# would import _cli itself to look inside it, so the walk is done here, skipping it).
_IMPORT_ALL = """
import importlib, json, pkgutil, sys

import splitds_dask

imported = []


def walk(path, prefix):
    for info in pkgutil.iter_modules(path, prefix):
        if info.name == "splitds_dask._cli":
            continue
        module = importlib.import_module(info.name)
        imported.append(info.name)
        if info.ispkg:
            walk(module.__path__, info.name + ".")


walk(splitds_dask.__path__, "splitds_dask.")
loaded = sorted(name for name in sys.modules if name.startswith("splitds_dask"))
print(json.dumps({"imported": imported, "loaded": loaded}))
"""


def _is_cli(name: str) -> bool:
    return name == CLI or name.startswith(CLI + ".")


@pytest.mark.subprocess
def test_importing_every_library_module_loads_no_command_line_module() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL],
        env=package_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    library = sorted(
        ".".join(("splitds_dask", *p.relative_to(PACKAGE).with_suffix("").parts))
        for p in PACKAGE.rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py") and "_cli" not in p.parts
    )
    assert set(library) <= set(result["imported"]), "every library module was imported"
    assert [name for name in result["loaded"] if _is_cli(name)] == []


def _library_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "_cli" not in p.relative_to(PACKAGE).parts)


def _imported_names(text: str, path: Path) -> list[str]:
    """Every module the import statements of ``text`` (the source of the module file ``path``)
    name, relative imports resolved; also ``importlib.import_module("...")`` calls."""
    package = ".".join(("splitds_dask", *path.relative_to(PACKAGE).parent.parts))
    names: list[str] = []
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.append(module)
            names.extend(f"{module}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.append(node.args[0].value)
    return names


@pytest.mark.parametrize(
    "statement",
    [
        "import splitds_dask._cli.main",
        "from splitds_dask._cli import main",
        "from splitds_dask import _cli",
        "from .._cli.targets import write_array",
        "from .. import _cli",
        "importlib.import_module('splitds_dask._cli')",
    ],
)
def test_the_static_check_sees_each_form_of_import(statement: str) -> None:
    """Its silence below means something: each form, written in ``_write/array.py``, is seen."""
    names = _imported_names(statement, PACKAGE / "_write" / "array.py")
    assert any(_is_cli(name) for name in names), names


@pytest.mark.parametrize("path", _library_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_library_module_imports_the_command_line(path: Path) -> None:
    names = _imported_names(path.read_text(encoding="utf-8"), path)
    assert [name for name in names if _is_cli(name)] == []
