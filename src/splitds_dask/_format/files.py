"""Finding a dataset's block files in its folder and ordering them by block number.

Block files are ``<stem><number>.h5``: ``0000.h5``, ``0001.h5`` (1-based), ``000.h5``,
``stack_0000.h5``. They are ordered by the *value* of the number, so 10,000 blocks and more sort
correctly. Other ``.h5`` files in the folder (``shifts_sobel.h5``, ``shifts_2.h5``, ``time.h5``)
are not blocks: only the family of names sharing the blocks' stem is used.

A number absent between the lowest and the highest is a missing block, named all the same. At
most 4,096 + 16 per file present may be missing: a stray file with a far-out number
(``999999999999.h5``) is refused, naming it, so that what a listing costs follows the files
present and never a number read from a name.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from splitds_dask._errors import NotASplitDatasetError

__all__ = ["BlockFiles", "BlockNames", "NoBlockFilesError", "find_block_files"]

# Matched against all the folder's names joined by "/", the one character no file name holds: one
# regex pass in C instead of a Python call per name keeps listing 100,000 files fast. Names that
# start with "." (our temporary files) are not blocks.
_BLOCK_NAMES = re.compile(r"(?:^|/)(?!\.)([^/]*?)([0-9]+)\.h5(?=/|$)")

# Blocks missing between the lowest and the highest number found may be at most this many plus
# this many per file present: a dataset with gaps keeps its numbering, while a stray file with a
# far-out number (``999999999999.h5``) is refused instead of making the reader hold a name and a
# flag for every number up to it.
_MISSING_FLOOR = 4096
_MISSING_PER_FILE = 16


class NoBlockFilesError(NotASplitDatasetError):
    """The folder holds no block files at all (rather than block files that do not fit)."""


@dataclass(frozen=True)
class BlockNames:
    """The file name of every block, by block number (C order of the grid).

    Writers name block ``i`` ``<stem><first + i>.h5`` with the number zero-padded to ``width``
    digits (wider numbers keep all their digits). Such a family is kept as that rule; only
    folders whose names follow no rule keep the explicit list.

    Attributes
    ----------
    stem : str
        What precedes the number (``""``, ``"stack_"``).
    first : int
        Number of block 0 (0, or 1 for 1-based numbering).
    width : int
        Minimum number of digits.
    count : int
        Number of blocks.
    explicit : tuple of str or None
        The names, when they follow no rule.
    """

    stem: str
    first: int
    width: int
    count: int
    explicit: tuple[str, ...] | None = None

    @classmethod
    def of(cls, names: tuple[str, ...], *, stem: str, first: int, width: int) -> BlockNames:
        """The rule ``stem, first, width`` if it gives exactly ``names``, else the list.

        ``names`` are ``<stem><digits>.h5`` whose numbers are ``first``, ``first + 1``, ...
        (what :func:`find_block_files` lists): for those, a name has the rule's length exactly
        when its digits are the rule's, so lengths are compared in bulk and a few names in full.
        """
        rule = cls(stem, first, width, len(names))
        if names and all(rule[i] == names[i] for i in _spot_checks(len(names))):
            lengths = np.fromiter(map(len, names), dtype=np.int64, count=len(names))
            numbers = np.arange(first, first + len(names), dtype=np.int64)
            digits = np.maximum(width, _digit_counts(numbers))
            if np.array_equal(lengths, digits + len(stem) + 3):
                return rule
        return cls(stem, first, width, len(names), tuple(names))

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> str:
        if index < 0:
            index += self.count
        if not 0 <= index < self.count:
            raise IndexError(f"block number {index} is out of range for {self.count} blocks")
        if self.explicit is not None:
            return self.explicit[index]
        return f"{self.stem}{self.first + index:0{self.width}d}.h5"

    @property
    def is_rule(self) -> bool:
        """Whether the names are kept as a rule (constant size) rather than a list."""
        return self.explicit is None

    def head(self, count: int) -> BlockNames:
        """The names of the first ``count`` blocks."""
        explicit = None if self.explicit is None else self.explicit[:count]
        return BlockNames(self.stem, self.first, self.width, count, explicit)

    def as_tuple(self) -> tuple[str, ...]:
        if self.explicit is not None:
            return self.explicit
        return tuple(self[i] for i in range(self.count))


def _spot_checks(count: int) -> list[int]:
    return sorted({0, 1 % count, count // 2, count - 1})


def _digit_counts(numbers: np.ndarray) -> np.ndarray:
    counts = np.ones(numbers.shape, dtype=np.int64)
    for power in range(1, 19):
        counts += numbers >= 10**power
    return counts


@dataclass(frozen=True)
class BlockFiles:
    """The block files of a folder, indexed by block number.

    Attributes
    ----------
    root : Path or str
        The folder (its URL, for a remote dataset).
    names : BlockNames
        ``names[i]`` is the file name of block ``i`` (C order), for ``i`` from 0 to the highest
        block found. A block whose file is absent gets the name it would have, so that errors can
        name it. Kept as a naming rule where the files follow one, so that an opened dataset of
        a million blocks does not hold a million strings.
    present : tuple of bool
        Whether each of ``names`` exists.
    """

    root: Path | str
    names: BlockNames
    present: tuple[bool, ...]

    @property
    def count(self) -> int:
        """Number of blocks up to the highest one found."""
        return len(self.names)

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(Path(self.root) / name for name in self.names.as_tuple())


def _families(root: Path | str, listing: Iterable[str] | None) -> dict[str, list[str]]:
    """The numbers of the folder's ``<stem><number>.h5`` files (not folders), by stem."""
    if listing is None:
        with os.scandir(root) as entries:
            names = "/".join([entry.name for entry in entries if not entry.is_dir()])
    else:
        names = "/".join(listing)
    families: dict[str, list[str]] = defaultdict(list)
    for stem, number in _BLOCK_NAMES.findall(names):
        families[stem].append(number)
    return families


def _choose_family(
    families: dict[str, list[str]], prefix: str | None, expected: int | None
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


def _contiguous_rule(digits: list[str], numbers: np.ndarray, stem: str) -> BlockNames | None:
    """The naming rule of ``digits`` when they number blocks 0 (or 1) to n without gaps.

    The common case, checked in bulk in listing order: no sort and no list of names. A string of
    digits is the rule's name for its value exactly when it has the rule's length.
    """
    low = int(numbers.min())
    if low not in (0, 1) or int(numbers.max()) - low + 1 != numbers.size:
        return None
    if not np.all(np.bincount(numbers - low, minlength=numbers.size) == 1):
        return None  # a number given twice (then one is missing): reported by the full path
    width = len(digits[int(numbers.argmin())])
    lengths = np.fromiter(map(len, digits), dtype=np.int64, count=len(digits))
    if not np.array_equal(lengths, np.maximum(width, _digit_counts(numbers))):
        return None
    return BlockNames(stem, low, width, int(numbers.size))


def _highest_allowed(present: int) -> int:
    """The highest block number a family of ``present`` files may reach (1-based numbering)."""
    return present + _MISSING_FLOOR + _MISSING_PER_FILE * present


def _check_spread(root: Path | str, stem: str, digits: list[str]) -> np.ndarray:
    """The numbers of ``digits``, unless so spread out that most blocks between them would be
    missing (then a :class:`NotASplitDatasetError` naming the strays).

    A name of any length is judged without overflowing a fixed-width integer: names of more
    than 18 digits are converted to Python integers.
    """
    present = len(digits)
    limit = _highest_allowed(present)
    if max(map(len, digits)) <= 18:
        array = np.fromiter(map(int, digits), dtype=np.int64, count=present)
        low, high = int(array.min()), int(array.max())
        if high - (1 if low == 1 else 0) + 1 <= limit:
            return array
        values = array.tolist()
    else:
        values = list(map(int, digits))
        low, high = min(values), max(values)
        if high - (1 if low == 1 else 0) + 1 <= limit:  # only leading zeros made them long
            return np.array(values, dtype=np.int64)
    numbers = sorted(values)
    by_number = {int(d): f"{stem}{d}.h5" for d in digits}
    # The dataset is the most files from the lowest number on whose numbers fit the rule; the
    # files numbered above them are the strays.
    first = 1 if low == 1 else 0
    k = max(
        (m for m in range(1, present + 1) if numbers[m - 1] - first < _highest_allowed(m)),
        default=0,
    )
    before, after = numbers[:k], numbers[k:]
    strays = ", ".join(by_number[n] for n in after[:3]) + (
        f" and {len(after) - 3} more" if len(after) > 3 else ""
    )
    kept = (
        f"{by_number[before[0]]} .. {by_number[before[-1]]}"
        if len(before) > 1
        else by_number[before[0]]
        if before
        else "no other block file"
    )
    jump = f"from {before[-1]} to {after[0]}" if before else f"to {after[0]}"
    raise NotASplitDatasetError(
        f"{root}: {kept} and {strays}: block numbers jump {jump}, too far for "
        f"{'a block' if len(after) == 1 else 'blocks'} of this dataset (at most "
        f"{_MISSING_FLOOR} + {_MISSING_PER_FILE} per file may be missing); "
        f"{'the stray file does' if len(after) == 1 else 'the stray files do'} not belong to "
        "it (move or rename to open the others)"
    )


def find_block_files(
    root: Path | str,
    *,
    prefix: str | None = None,
    expected: int | None = None,
    listing: Iterable[str] | None = None,
) -> BlockFiles:
    """List the block files of ``root`` without opening any of them.

    Parameters
    ----------
    root
        The dataset folder (for a remote one, its URL: only named in errors then).
    prefix
        Only use files named ``<prefix>_<number>.h5`` (or ``<prefix><number>.h5``).
    expected
        The number of blocks the metadata declares; used to pick the block files among several
        families of numbered names.
    listing
        The names of the files in ``root``, when they were listed another way (a remote store);
        by default ``root`` is listed here.

    Raises
    ------
    NoBlockFilesError
        ``root`` holds no block files.
    NotASplitDatasetError
        Two files claim the same block number, or numbers jump so far that more than 4,096 +
        16 per file present would be missing (naming the stray files).
    """
    families = _families(root, listing)
    stem = _choose_family(families, prefix, expected)
    if stem is None:
        what = f"named '{prefix}_<number>.h5'" if prefix is not None else "(<number>.h5)"
        raise NoBlockFilesError(f"{root}: no block files {what}: not a split dataset")
    digits = families[stem]
    # Safe in int64: _check_spread bounds every number by a multiple of the number of files.
    numbers = _check_spread(root, stem, digits)
    rule = _contiguous_rule(digits, numbers, stem)
    if rule is not None:
        return BlockFiles(root, rule, (True,) * rule.count)
    order = np.argsort(numbers, kind="stable")
    numbers = numbers[order]
    repeated = np.flatnonzero(numbers[1:] == numbers[:-1])
    if repeated.size:
        i, j = order[repeated[0]], order[repeated[0] + 1]
        raise NotASplitDatasetError(
            f"{root}: two files claim block number {numbers[repeated[0]]}: "
            f"{stem}{digits[i]}.h5 and {stem}{digits[j]}.h5"
        )
    names = [f"{stem}{digits[i]}.h5" for i in order.tolist()]
    # 1-based numbering (fimpy's volumetric loader, SplitDataset.jl) starts at 1.
    first = 1 if numbers[0] == 1 else 0
    count = int(numbers[-1]) - first + 1
    width = len(digits[order[0]])
    if count == len(names):
        # Numbered without gaps, yet _contiguous_rule found no rule: the padding varies.
        return BlockFiles(
            root, BlockNames(stem, first, width, count, tuple(names)), (True,) * count
        )
    # Gaps: a missing block gets the name it would have, so that errors can name it.
    present = np.zeros(count, dtype=bool)
    present[numbers - first] = True
    by_number = dict(zip(numbers.tolist(), names, strict=True))
    filled = tuple(by_number.get(n, f"{stem}{n:0{width}d}.h5") for n in range(first, first + count))
    return BlockFiles(
        root, BlockNames.of(filled, stem=stem, first=first, width=width), tuple(present.tolist())
    )
