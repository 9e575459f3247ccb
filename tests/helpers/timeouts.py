"""How long a test waits for something that should come: a subprocess to finish, workers to join
a cluster, a result from one.

One figure for every such wait, ``SPLITDS_TEST_TIMEOUT`` seconds (default 300): raise it on a
slow or loaded machine. It bounds waits that succeed in seconds, so a passing test never takes
it; it is below the hang guard's ``SPLITDS_TEST_HANG_SECONDS`` (default 600), so a stuck wait
fails its test with its own message before the hang guard ends the run.
"""

from __future__ import annotations

import os

TIMEOUT = float(os.environ.get("SPLITDS_TEST_TIMEOUT", "300"))
