"""pytest plugin: no test may hang silently.

A test that hangs (a distributed compute waiting forever for a result, a subprocess that never
exits) would stop CI with no word of where. Past ``SPLITDS_TEST_HANG_SECONDS`` (default 600) in
one test, setup and teardown included, every thread's traceback goes to stderr and the run ends
with an error. The slowest test takes about 100 s on a loaded machine.
"""

from __future__ import annotations

import faulthandler
import os
import sys
from collections.abc import Iterator

import pytest

_STDERR = pytest.StashKey[int]()


def hang_seconds() -> float:
    return float(os.environ.get("SPLITDS_TEST_HANG_SECONDS", "600"))


def pytest_configure(config: pytest.Config) -> None:
    # The real stderr: pytest captures file descriptor 2 while tests run, and that capture is
    # lost when the process exits. Capturing is suspended while plugins are configured.
    config.stash[_STDERR] = os.dup(sys.stderr.fileno())


def pytest_unconfigure(config: pytest.Config) -> None:
    os.close(config.stash[_STDERR])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    faulthandler.dump_traceback_later(hang_seconds(), exit=True, file=item.config.stash[_STDERR])
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
