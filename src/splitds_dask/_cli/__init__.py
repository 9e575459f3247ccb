"""The ``splitds`` command line: its commands, conversions, the demo and their helpers.

The library never imports this package.
"""

from __future__ import annotations

from splitds_dask._cli.main import main

__all__ = ["main"]
