"""Finding a dataset's block files in its folder and ordering them by block number.

Block files are ``<stem><number>.h5``: ``0000.h5``, ``0001.h5`` (1-based), ``000.h5``,
``stack_0000.h5``. They are ordered by the *value* of the number, so 10,000 blocks and more sort
correctly. Other ``.h5`` files in the folder (``shifts_sobel.h5``, ``shifts_2.h5``, ``time.h5``)
are not blocks: only the family of names sharing the blocks' stem is used.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from ._errors import NotASplitDatasetError

__all__ = ["BlockFiles", "find_block_files"]

_BLOCK_NAME = re.compile(r"^(?P<stem>.*?)(?P<number>[0-9]+)\.h5$")


@dataclass(frozen=True)
class BlockFiles:
    """The block files of a folder, indexed by block number.

    Attributes
    ----------
    root : Path
        The folder.
    names : tuple of str
        ``names[i]`` is the file name of block ``i`` (C order), for ``i`` from 0 to the highest
        block found. A block whose file is absent gets the name it would have, so that errors can
        name it. Plain strings: a ``Path`` per file costs more than listing 100,000 files.
    present : tuple of bool
        Whether each of ``names`` exists.
    """

    root: Path
    names: tuple[str, ...]
    present: tuple[bool, ...]

    @property
    def count(self) -> int:
        """Number of blocks up to the highest one found."""
        return len(self.names)

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(self.root / name for name in self.names)


def _families(root: Path) -> dict[str, list[tuple[int, str]]]:
    families: dict[str, list[tuple[int, str]]] = defaultdict(list)
    with os.scandir(root) as entries:
        for entry in entries:
            match = _BLOCK_NAME.match(entry.name)
            if match is not None and not entry.name.startswith(".") and not entry.is_dir():
                families[match["stem"]].append((int(match["number"]), entry.name))
    return families


def _choose_family(
    families: dict[str, list[tuple[int, str]]], prefix: str | None, expected: int | None
) -> str | None:
    if prefix is not None:
        # The original globbed "*{prefix}_[0-9]*.h5"; accept the stem with or without "_".
        wanted = [s for s in families if s in (prefix, prefix + "_") or s.endswith(prefix + "_")]
        return max(wanted, key=lambda s: len(families[s]), default=None)
    if not families:
        return None
    if expected is not None:
        exact = [s for s in families if len(families[s]) == expected]
        if exact:
            return min(exact, key=lambda s: (s != "", s))
    # Prefer the largest family; among equals, bare numbers, then the shortest stem.
    return max(families, key=lambda s: (len(families[s]), s == "", -len(s)))


def find_block_files(
    root: Path, *, prefix: str | None = None, expected: int | None = None
) -> BlockFiles:
    """List the block files of ``root`` without opening any of them.

    Parameters
    ----------
    root
        The dataset folder.
    prefix
        Only use files named ``<prefix>_<number>.h5`` (or ``<prefix><number>.h5``).
    expected
        The number of blocks the metadata declares; used to pick the block files among several
        families of numbered names.
    """
    families = _families(root)
    stem = _choose_family(families, prefix, expected)
    if stem is None:
        what = f"named '{prefix}_<number>.h5'" if prefix is not None else "(<number>.h5)"
        raise NotASplitDatasetError(f"{root}: no block files {what}: not a split dataset")
    numbered = sorted(families[stem])
    numbers = [n for n, _ in numbered]
    for (a, name_a), (b, name_b) in pairwise(numbered):
        if a == b:
            raise NotASplitDatasetError(
                f"{root}: two files claim block number {a}: {name_a} and {name_b}"
            )
    # 1-based numbering (fimpy's volumetric loader, SplitDataset.jl) starts at 1.
    first = 1 if numbers[0] == 1 else 0
    width = len(numbered[0][1]) - len(stem) - 3
    by_number = dict(numbered)
    names = []
    present = []
    for number in range(first, numbers[-1] + 1):
        name = by_number.get(number)
        present.append(name is not None)
        names.append(name if name is not None else f"{stem}{number:0{width}d}.h5")
    return BlockFiles(root, tuple(names), tuple(present))
