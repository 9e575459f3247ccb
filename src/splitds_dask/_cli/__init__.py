"""The ``splitds`` command line: its commands, conversions, the demo and their helpers.

- :mod:`.main`: the argument parser and the dispatch (``main``, the ``splitds`` entry point);
- one module per command: :mod:`.info`, :mod:`.verify`, :mod:`.seal`, :mod:`.convert`,
  :mod:`.project`, :mod:`.demo`;
- shared by the commands: :mod:`.messages` (program name, usage errors, one-line messages),
  :mod:`.schedulers` (``--scheduler``, progress), :mod:`.arguments`, :mod:`.sizes`;
- the conversions: :mod:`.sources` (what is read), :mod:`.targets` (what is written),
  :mod:`.selection` (``--select``), :mod:`.formats` (names of formats), :mod:`.ome` (OME-Zarr metadata), :mod:`.images`
  (projections, previews), :mod:`.png` (the PNG encoder); the demo's data comes from
  :mod:`splitds_dask._synthetic`.

The library never imports this package.
"""

from __future__ import annotations

from splitds_dask._cli.main import main

__all__ = ["main"]
