"""Finding block files and ordering them by block number (names only: empty files suffice)."""

from __future__ import annotations

import pickle
import random
import re

import pytest

import splitds_dask as sd
from splitds_dask._format.files import find_block_files


def _touch(folder, names):
    for name in names:
        (folder / name).write_bytes(b"")


@pytest.mark.slow
def test_numeric_order_beyond_9999(tmp_path):
    names = [f"{i:04d}.h5" for i in range(10_051)]
    shuffled = names[:]
    random.Random(0).shuffle(shuffled)
    _touch(tmp_path, shuffled)
    files = find_block_files(tmp_path, expected=10_051)
    assert [p.name for p in files.paths] == names
    assert files.paths[9999].name == "9999.h5"
    assert files.paths[10000].name == "10000.h5"  # lexicographic sort would put it after 1000.h5
    assert all(files.present)
    assert files.count == 10_051
    assert all(p.parent == tmp_path for p in files.paths)


@pytest.mark.parametrize(
    ("fmt", "first", "prefix"),
    [
        ("{:04d}.h5", 0, None),
        ("{:04d}.h5", 1, None),  # 1-based: fimpy volumetric loader, SplitDataset.jl
        ("{:03d}.h5", 0, None),  # fimpy StackSaver
        ("{:d}.h5", 0, None),  # no zero padding
        ("stack_{:04d}.h5", 0, "stack"),
        ("stack_{:04d}.h5", 0, None),
        ("plane{:02d}.h5", 1, None),
    ],
)
def test_name_variants(tmp_path, fmt, first, prefix):
    n = 23
    names = [fmt.format(i + first) for i in range(n)]
    _touch(tmp_path, reversed(names))
    files = find_block_files(tmp_path, prefix=prefix, expected=n)
    assert [p.name for p in files.paths] == names
    assert files.present == (True,) * n


@pytest.mark.parametrize(
    "strays",
    [
        ["shifts_2.h5"],
        ["time.h5", "shifts_sobel.h5"],
        ["shifts_2.h5", "shifts_3.h5", "time.h5", "shifts_sobel.h5", "notes.txt", "0001.txt"],
        [".0003.h5", ".0000.h5.1f2e3d.partial", "0002.h5.tmp", "0002.h5~"],
    ],
)
def test_stray_files_ignored(tmp_path, strays):
    names = [f"{i:04d}.h5" for i in range(6)]
    _touch(tmp_path, names + strays)
    files = find_block_files(tmp_path, expected=6)
    assert [p.name for p in files.paths] == names
    # Also without knowing the expected count: the largest family wins.
    assert [p.name for p in find_block_files(tmp_path).paths] == names


def test_stray_family_with_same_count_as_expected_is_not_chosen_over_blocks(tmp_path):
    _touch(tmp_path, ["0000.h5", "0001.h5", "0002.h5", "shifts_0.h5", "shifts_1.h5"])
    assert [p.name for p in find_block_files(tmp_path, expected=3).paths] == [
        "0000.h5",
        "0001.h5",
        "0002.h5",
    ]


def test_prefix_selects_family(tmp_path):
    _touch(tmp_path, [f"{i:04d}.h5" for i in range(5)] + [f"stack_{i:04d}.h5" for i in range(3)])
    assert [p.name for p in find_block_files(tmp_path, prefix="stack").paths] == [
        "stack_0000.h5",
        "stack_0001.h5",
        "stack_0002.h5",
    ]
    assert len(find_block_files(tmp_path, expected=5).paths) == 5
    assert len(find_block_files(tmp_path, expected=3).paths) == 3
    with pytest.raises(sd.NotASplitDatasetError, match="other"):
        find_block_files(tmp_path, prefix="other")


@pytest.mark.parametrize(
    ("a", "b"), [("001.h5", "0001.h5"), ("1.h5", "01.h5"), ("stack_2.h5", "stack_002.h5")]
)
def test_duplicate_numbers_rejected(tmp_path, a, b):
    stem = "stack_" if a.startswith("stack_") else ""
    _touch(tmp_path, [f"{stem}{i:03d}.h5" for i in range(4) if i not in (1, 2)] + [a, b])
    with pytest.raises(sd.NotASplitDatasetError) as info:
        find_block_files(tmp_path)
    assert a in str(info.value)
    assert b in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("first", [0, 1])
def test_gaps_are_named(tmp_path, first):
    numbers = [n + first for n in (0, 1, 3, 4, 7)]
    _touch(tmp_path, [f"{n:04d}.h5" for n in numbers])
    files = find_block_files(tmp_path)
    assert [p.name for p in files.paths] == [f"{n + first:04d}.h5" for n in range(8)]
    assert [p.name for p, ok in zip(files.paths, files.present, strict=True) if not ok] == [
        f"{2 + first:04d}.h5",
        f"{5 + first:04d}.h5",
        f"{6 + first:04d}.h5",
    ]
    missing = [p for p, ok in zip(files.paths, files.present, strict=True) if not ok]
    assert not any(p.exists() for p in missing)


def test_gap_names_widen_like_their_neighbours(tmp_path):
    _touch(tmp_path, ["stack_000.h5", "stack_002.h5"])
    files = find_block_files(tmp_path)
    assert [p.name for p in files.paths] == ["stack_000.h5", "stack_001.h5", "stack_002.h5"]
    assert files.present == (True, False, True)


@pytest.mark.parametrize("contents", [[], ["notes.txt", "stack_metadata.json"], ["time.h5"]])
def test_no_block_files(tmp_path, contents):
    _touch(tmp_path, contents)
    with pytest.raises(sd.NotASplitDatasetError, match=re.escape(str(tmp_path))):
        find_block_files(tmp_path)


def test_subfolders_named_like_blocks_are_ignored(tmp_path):
    _touch(tmp_path, ["0000.h5", "0001.h5"])
    (tmp_path / "green").mkdir()
    (tmp_path / "0002.h5").mkdir()
    files = find_block_files(tmp_path)
    assert [p.name for p in files.paths] == ["0000.h5", "0001.h5"]


# --- names kept as a rule -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "rule"),
    [
        ([f"{i:04d}.h5" for i in range(12)], ("", 0, 4)),
        ([f"{i:04d}.h5" for i in range(1, 13)], ("", 1, 4)),
        ([f"{i:03d}.h5" for i in range(1005)], ("", 0, 3)),  # widened past 999, as writers do
        ([f"{i:d}.h5" for i in range(101)], ("", 0, 1)),
        ([f"stack_{i:04d}.h5" for i in range(7)], ("stack_", 0, 4)),
        (["0000.h5"], ("", 0, 4)),
    ],
)
def test_names_following_a_rule_are_kept_as_the_rule(tmp_path, names, rule):
    _touch(tmp_path, names)
    files = find_block_files(tmp_path)
    assert files.names.is_rule
    assert (files.names.stem, files.names.first, files.names.width) == rule
    # An independent oracle: the names as listed, in number order.
    assert [files.names[i] for i in range(len(names))] == names
    assert files.names.as_tuple() == tuple(names)
    assert files.names[-1] == names[-1]
    with pytest.raises(IndexError):
        files.names[len(names)]
    # The rule does not grow with the number of blocks.
    assert len(pickle.dumps(files.names)) < 200


@pytest.mark.parametrize(
    "names",
    [
        ["0000.h5", "1.h5", "0002.h5"],  # padding that changes within the family
        ["00.h5", "01.h5", "002.h5", "03.h5"],
        ["0.h5", "01.h5"],
    ],
)
def test_names_following_no_rule_are_kept_as_a_list(tmp_path, names):
    _touch(tmp_path, names)
    files = find_block_files(tmp_path)
    assert not files.names.is_rule
    assert files.names.as_tuple() == tuple(names)
    assert [files.names[i] for i in range(len(names))] == names


def test_head_keeps_the_first_names(tmp_path):
    names = [f"{i:04d}.h5" for i in range(9)]
    _touch(tmp_path, names)
    head = find_block_files(tmp_path).names.head(4)
    assert head.as_tuple() == tuple(names[:4])
    assert len(head) == 4


@pytest.mark.parametrize(
    "names",
    [
        ["0000.h5", "01.h5", "0002.h5"],  # one name padded less than the first
        [f"{i:02d}.h5" for i in range(10)] + ["010.h5", "11.h5"],  # one padded more
        ["1.h5", "02.h5", "3.h5"],  # 1-based, one padded
        [f"{i:d}.h5" for i in range(12)],  # no padding: a rule, widths grow with the numbers
    ],
)
def test_names_kept_as_listed_whatever_their_padding(tmp_path, names):
    _touch(tmp_path, reversed(names))
    files = find_block_files(tmp_path)
    assert [p.name for p in files.paths] == names
    assert [files.names[i] for i in range(len(names))] == names
    assert files.present == (True,) * len(names)


# --- numbers far beyond the files present ------------------------------------------------------


@pytest.mark.parametrize("first", [0, 1])
@pytest.mark.parametrize(
    "stray", ["999999999999.h5", "100000000.h5", "1234567890123456789012345.h5", "9" * 200 + ".h5"]
)
def test_a_far_out_number_is_refused_naming_the_stray(tmp_path, first, stray):
    _touch(tmp_path, [f"{i + first:04d}.h5" for i in range(40)] + [stray])
    with pytest.raises(sd.NotASplitDatasetError) as info:
        find_block_files(tmp_path)
    message = str(info.value)
    assert f"{first:04d}.h5 .. {39 + first:04d}.h5 and {stray}" in message
    assert f"jump from {39 + first} to {int(stray[:-3])}" in message
    assert str(tmp_path) in message


def test_several_strays_are_all_named(tmp_path):
    strays = ["5000000.h5", "999999999999.h5", "1234567890123456789012345.h5"]
    _touch(tmp_path, [f"{i:04d}.h5" for i in range(10)] + strays)
    with pytest.raises(sd.NotASplitDatasetError) as info:
        find_block_files(tmp_path)
    assert "0000.h5 .. 0009.h5 and " + ", ".join(strays) in str(info.value)
    assert "the stray files do not belong" in str(info.value)


def test_a_lone_far_out_number_is_refused(tmp_path):
    _touch(tmp_path, ["999999999999.h5"])
    with pytest.raises(sd.NotASplitDatasetError, match=r"999999999999\.h5"):
        find_block_files(tmp_path)


@pytest.mark.parametrize("first", [0, 1])
@pytest.mark.parametrize("n", [1, 40, 300])
def test_missing_blocks_bounded_by_the_files_present(tmp_path, first, n):
    # n files numbered from `first`, and one more: with the last one, n + 1 files may span at
    # most 4096 + 17 * (n + 1) block numbers (4096 missing, and 16 more per file present).
    span = 4096 + 17 * (n + 1)
    names = [f"{i + first:04d}.h5" for i in range(n)]
    _touch(tmp_path, [*names, f"{first + span - 1:04d}.h5"])
    files = find_block_files(tmp_path)
    assert files.count == span
    assert sum(files.present) == n + 1
    assert files.names[span - 2] == f"{first + span - 2:04d}.h5"  # a missing one, named
    (tmp_path / f"{first + span - 1:04d}.h5").unlink()
    _touch(tmp_path, [f"{first + span:04d}.h5"])  # one number further
    with pytest.raises(sd.NotASplitDatasetError, match=f"jump from {first + n - 1} to"):
        find_block_files(tmp_path)


def test_a_stray_in_a_legacy_dataset_is_named(tmp_path):
    # Without a metadata file the dataset is read from its last block file: the stray's
    # number is refused first, with its name, rather than opened as the last block.
    _touch(tmp_path, [f"{i:04d}.h5" for i in range(5)] + ["999999999999.h5"])
    with pytest.raises(sd.NotASplitDatasetError, match=r"0004\.h5 and 999999999999\.h5"):
        sd.SplitDataset(tmp_path)
