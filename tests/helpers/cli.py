"""Helpers shared by the command-line and demo tests: run ``main`` in-process, check errors."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import splitds_dask
from splitds_dask._cli.images import MOSAIC_GAP
from splitds_dask._cli.main import main
from splitds_dask._synthetic import FRAME_SHAPE

# 8 MB is 7 time points of 8x256x256 uint16; 3 per block gives blocks of 3, 3 and 1.
SIZE = "8MB"
N_FRAMES = 7
BLOCK_FRAMES = 3
# The demo's PNG: the 8 planes of the mean tiled 2 x 4, with gaps between them.
PNG_SHAPE = (2 * FRAME_SHAPE[1] + MOSAIC_GAP, 4 * FRAME_SHAPE[2] + 3 * MOSAIC_GAP)


@dataclass
class Run:
    code: int
    out: str
    err: str


def run_main(*argv: str) -> Run:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return Run(code, out.getvalue(), err.getvalue())


def assert_one_line_error(run: Run, code: int, *fragments: str) -> None:
    assert run.code == code, run
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    assert "Traceback" not in run.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def package_pythonpath() -> str:
    """``PYTHONPATH`` under which other processes import the splitds_dask under test."""
    src = str(Path(splitds_dask.__file__).resolve().parents[1])
    return os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))


def package_env() -> dict[str, str]:
    """This process's environment, with :func:`package_pythonpath`."""
    return dict(os.environ, PYTHONPATH=package_pythonpath())


def splitds_command() -> list[str]:
    """The ``splitds`` console script beside this interpreter, else ``python -m``."""
    script = Path(sys.executable).parent / ("splitds.exe" if os.name == "nt" else "splitds")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "splitds_dask._cli"]
