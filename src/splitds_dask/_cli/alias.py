"""``splitds alias``: make ``import split_dataset`` run splitds-dask in every process.

Code written for the original package (fimpy, napari-split-dataset, lab scripts) imports
``split_dataset``. ``splitds alias enable`` makes every interpreter of this environment answer
that import with splitds-dask, workers included; ``splitds alias disable`` undoes it, and
``splitds alias status`` says what ``import split_dataset`` gives (see
:mod:`splitds_dask._compat.alias`).
"""

from __future__ import annotations

import argparse

from splitds_dask._cli.arguments import Commands

__all__ = ["add_parser", "run"]

_ACTIONS = ("enable", "disable", "status")


def add_parser(commands: Commands) -> None:
    """Add ``alias`` and its arguments."""
    alias = commands.add_parser(
        "alias",
        help="answer 'import split_dataset' with splitds-dask in every process of this "
        "environment (enable, disable, status)",
        description="enable: write a .pth file into this environment's site-packages so that "
        "every Python process started from it (joblib, multiprocessing and dask workers "
        "included) answers 'import split_dataset' (and split_dataset.blocks, "
        "split_dataset.split_dataset) with splitds-dask. Refused while a real split-dataset "
        "can be imported. disable: remove that file. status: say what 'import split_dataset' "
        "gives.",
    )
    alias.add_argument("action", choices=_ACTIONS, metavar="{enable,disable,status}")
    alias.add_argument(
        "--site-dir",
        metavar="DIR",
        help="the site-packages folder to write to (default: this Python's)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``alias ACTION``; 0 on success."""
    from splitds_dask._compat.alias import alias_status, disable_alias, enable_alias

    action = {"enable": enable_alias, "disable": disable_alias, "status": alias_status}
    status = action[args.action](site_dir=args.site_dir)
    print(status.describe())
    return 0
