"""The hang guard (tests/helpers/hang_guard.py) ends a run whose test hangs, saying where."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.timeouts import TIMEOUT

_HANGING = """
import threading


def test_waits_forever():
    threading.Event().wait()
"""


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_hanging_test_ends_the_run_with_its_traceback(tmp_path: Path) -> None:
    (tmp_path / "test_hangs.py").write_text(_HANGING)
    env = dict(os.environ, SPLITDS_TEST_HANG_SECONDS="2", PYTHONPATH=str(Path(__file__).parents[1]))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.helpers.hang_guard",
            "-p",
            "no:cacheprovider",
            "-q",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode != 0
    assert "Timeout" in proc.stderr
    assert "test_waits_forever" in proc.stderr
