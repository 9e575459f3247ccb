"""The old split_dataset 0.4.4 as a peer: ``_old_script.py`` run in its own numpy<2 venv.

The venv is the one the interoperability tests build and cache (``tests/helpers/oldpkg.py``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE.parent))  # the repository, for the tests package

from tests.helpers.oldpkg import old_python, run_old_checked

__all__ = ["old_python", "run_old_spec"]

_SCRIPT = (_HERE / "_old_script.py").read_text()


def run_old_spec(spec: dict[str, Any], *, timeout: float = 3600) -> dict[str, Any]:
    """Run one spec (see ``_old_script.py``) in the old venv and return its JSON answer."""
    proc = run_old_checked(_SCRIPT, json.dumps(spec), _HERE, timeout=timeout)
    return json.loads(proc.stdout.strip().splitlines()[-1])
