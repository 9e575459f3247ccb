"""Tests of :class:`splitds_dask.Blocks` against the original ``split_dataset.Blocks`` and numpy.

* ``test_same_as_original``: a few hundred seeded random geometries (1-4 axes, partial/None block
  shapes, ``dim_split``, ``blocks_number``, padding, crop, setters) run through the *same*
  extraction code here and in the original package (old venv, one subprocess for all cases);
  every attribute and method result must be identical, except the documented bugs.
* ``test_bug_*``: each bug of the original that is fixed, with the original's wrong answer
  (checked against the old venv in ``test_original_bugs_are_as_documented``).
* hypothesis properties: the geometry against brute-force numpy computations.
"""

from __future__ import annotations

import doctest
import itertools
import json
import math
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from splitds_dask import BlockIndexError, Blocks
from splitds_dask._compat import blocks as _blocks
from tests.helpers.oldpkg import JSONABLE, run_old_checked
from tests.helpers.timeouts import TIMEOUT

# --------------------------------------------------------------------------------------------
# Extraction code run identically by this package and by the original (in the old venv).

EXTRACT = (
    JSONABLE
    + r"""

def _arg(v):
    if isinstance(v, list):
        return tuple(_arg(e) for e in v)
    return v


def make(Blocks, c):
    kw = {k: _arg(c[k]) for k in ("dim_split", "blocks_number", "padding", "crop") if k in c}
    return Blocks(_arg(c["shape_full"]), _arg(c["shape_block"]), **kw)


def state(b):
    ser = b.serialize()
    return {
        "shape_full": _j(b.shape_full),
        "shape_cropped": _j(b.shape_cropped),
        "shape_block": _j(b.shape_block),
        "shape_block_type": type(b.shape_block).__name__,
        "padding": _j(b.padding),
        "padding_type": type(b.padding).__name__,
        "crop": _j(b.crop),
        "starts": _j(b.starts),
        "dim_split": _j(b.dim_split),
        "n_blocks": int(b.n_blocks),
        "n_dims": int(b.n_dims),
        "block_starts": _j(b.block_starts),
        "block_ends": _j(b.block_ends),
        "grid_shape": list(b.block_starts.shape),
        "dtypes": [str(b.block_starts.dtype), str(b.block_ends.dtype)],
        "serialize": {k: _j(v) for k, v in ser.items()},
        "serialize_keys": list(ser),
    }


def extract(Blocks, c):
    b = make(Blocks, c)
    out = state(b)
    as_slices = list(b.slices())
    as_tuples = list(b.slices(as_tuples=True))
    out["slices"] = _j(as_slices)
    out["tuples"] = _j(as_tuples)
    out["bound_types"] = sorted(
        {type(v).__name__ for _, bounds in as_tuples for pair in bounds for v in pair}
        | {type(getattr(s, a)).__name__ for _, sl in as_slices for s in sl for a in ("start", "stop")}
    )
    out["getitem"] = [_j(b[i]) for i in range(int(b.n_blocks))]
    out["l2c"] = [_j(b.linear_to_cartesian(i)) for i in range(int(b.n_blocks))]
    out["c2l"] = [int(b.cartesian_to_linear(idx)) for idx, _ in as_tuples]
    out["centres"] = _j(b.centres())
    out["centres_dtype"] = str(b.centres().dtype)
    out["take"] = [_j(b.blocks_to_take(tuple(s), tuple(e))) for s, e in c["take"]]
    out["contain"] = [_j(b.block_containing_coords(tuple(x))) for x in c["coords"]]
    out["block_to_slices"] = _j(Blocks.block_to_slices(as_tuples[0][1]))
    out["drop"] = [state(b.drop_dim(k)) for k in range(b.n_dims)] if b.n_dims > 1 else []
    out["after_set"] = []
    for name, value in c.get("set", []):
        # (a list: the original's setter stores the padding as given)
        setattr(b, name, list(value) if name == "padding" else _arg(value))
        out["after_set"].append(state(b))
        out["after_set"].append(_j(list(b.slices(as_tuples=True))))
    return out
"""
)

OLD_RUNNER = (
    "import json, sys, warnings\n"
    "warnings.simplefilter('ignore')\n"
    "from split_dataset import Blocks\n"
    "ns = {}\n"
    "exec(open(sys.argv[1]).read(), ns)\n"
    "cases = json.load(open(sys.argv[2]))\n"
    "results = []\n"
    "for c in cases:\n"
    "    try:\n"
    "        results.append({'ok': ns['extract'](Blocks, c)})\n"
    "    except Exception as e:\n"
    "        results.append({'error': type(e).__name__ + ': ' + str(e)})\n"
    "json.dump(results, open(sys.argv[3], 'w'))\n"
)

_NS: dict[str, Any] = {}
exec(EXTRACT, _NS)  # noqa: S102  (our own constant: the same code runs in the old venv)


def extract_here(case: dict) -> dict:
    return json.loads(json.dumps(_NS["extract"](Blocks, case)))


# --------------------------------------------------------------------------------------------
# Seeded random cases, restricted to where the original works (grid >= 1 on every axis).


def _grid(cropped: list[int], blocks: list[int], pads: list[int]) -> int:
    return math.prod(
        math.ceil((n - p) / min(b, n)) for n, b, p in zip(cropped, blocks, pads, strict=True)
    )


def _boundary(c: int, lo: int, b: int) -> bool:
    """True if ``c`` is the start of a block other than the first (the original's bug)."""
    return c > lo and (c - lo) % b == 0


def _make_case(rng: random.Random, i: int) -> dict | None:
    ndim = rng.randint(1, 4)
    max_n = {1: 40, 2: 14, 3: 8, 4: 6}[ndim]
    shape = [rng.randint(1, max_n) for _ in range(ndim)]
    crop = None
    if rng.random() < 0.4:
        crop = []
        for n in shape:
            lo = rng.randint(0, (n - 1) // 2)
            crop.append([lo, rng.randint(0, n - 1 - lo)])
    lows = [0] * ndim if crop is None else [lo for lo, _ in crop]
    cropped = [
        n if crop is None else n - lo - hi
        for n, (lo, hi) in zip(shape, crop or [(0, 0)] * ndim, strict=True)
    ]
    with_setters = rng.random() < 0.3
    form = (
        "full"
        if with_setters
        else rng.choice(["full", "prefix", "none_entries", "dim_split", "blocks_number"])
    )
    top = 0 if with_setters else 3  # entries larger than the axis are clamped
    entries: list[int | None] = [rng.randint(1, n + top) for n in cropped]
    case: dict[str, Any] = {"shape_full": shape}
    if form == "prefix":
        entries = entries[: rng.randint(1, ndim)]
    elif form == "none_entries":
        keep = rng.randrange(ndim)
        entries = [e if a == keep or rng.random() < 0.5 else None for a, e in enumerate(entries)]
    case["shape_block"] = entries
    if form == "dim_split":
        split = sorted(rng.sample(range(ndim), rng.randint(1, ndim)))
        if rng.random() < 0.3:
            rng.shuffle(split)
        case["dim_split"] = split
    else:
        split = [a for a, e in enumerate(entries) if e is not None]
    full = entries + [None] * (ndim - len(entries))
    blocks = [
        n if (e is None or a not in split) else min(e, n)
        for a, (e, n) in enumerate(zip(full, cropped, strict=True))
    ]
    if form == "blocks_number":
        number = [rng.randint(1, n + 1) for n in cropped]
        case["blocks_number"] = number
        blocks = [math.ceil(n / k) for n, k in zip(cropped, number, strict=True)]
    if crop is not None:
        case["crop"] = crop
    if rng.random() < 0.5:
        p = rng.randint(0, 3)
        p = min([p] + [cropped[a] - 1 for a in split])
        case["padding"] = p
        pads = [p if a in split else 0 for a in range(ndim)]
    else:
        raw = [rng.randint(0, 3) for _ in range(ndim)]
        raw = [min(p, n - 1) for p, n in zip(raw, cropped, strict=True)]
        case["padding"] = raw
        pads = [p if a in split else 0 for a, p in enumerate(raw)]
    if _grid(cropped, blocks, pads) > 150:
        return None

    def ranges(cropped: list[int], lows: list[int]) -> list:
        out = []
        for _ in range(3):
            s, e = [], []
            for n, lo in zip(cropped, lows, strict=True):
                a = rng.randrange(n)
                s.append(lo + a)
                e.append(lo + rng.randint(a + 1, n))
            out.append([s, e])
        return out

    case["take"] = ranges(cropped, lows)
    coords = []
    while len(coords) < 5:
        c = [lo + rng.randrange(n) for lo, n in zip(lows, cropped, strict=True)]
        if not any(_boundary(x, lo, b) for x, lo, b in zip(c, lows, blocks, strict=True)):
            coords.append(c)
    case["coords"] = coords

    if with_setters:
        setters: list = []
        cur_shape, cur_crop, cur_b, cur_p = list(shape), crop, list(blocks), list(pads)
        for _ in range(rng.randint(1, 3)):
            what = rng.choice(["shape_full", "crop", "padding", "shape_block"])
            lo_hi = cur_crop or [[0, 0]] * ndim
            if what == "shape_full":
                # Never smaller than the block shape + padding (the original would clamp and
                # keep the clamped block, where this package re-clamps the requested block).
                new = [
                    lo + hi + rng.randint(max(b, p + 1), b + 6)
                    for (lo, hi), b, p in zip(lo_hi, cur_b, cur_p, strict=True)
                ]
                setters.append(["shape_full", new])
                cur_shape = new
            elif what == "crop":
                new_crop = None
                if rng.random() < 0.7:
                    new_crop = []
                    for n, b, p in zip(cur_shape, cur_b, cur_p, strict=True):
                        room = n - max(b, p + 1)
                        lo = rng.randint(0, room)
                        new_crop.append([lo, rng.randint(0, room - lo)])
                setters.append(["crop", new_crop])
                cur_crop = new_crop
            else:
                cur_cropped = [n - lo - hi for n, (lo, hi) in zip(cur_shape, lo_hi, strict=True)]
                if what == "padding":
                    cur_p = [rng.randint(0, min(3, n - 1)) for n in cur_cropped]
                    setters.append(["padding", cur_p])
                else:
                    cur_b = [
                        rng.randint(max(1, p), n) for n, p in zip(cur_cropped, cur_p, strict=True)
                    ]
                    cur_b = [max(b, 1) for b in cur_b]
                    setters.append(["shape_block", cur_b])
            lo_hi = cur_crop or [[0, 0]] * ndim
            cur_cropped = [n - lo - hi for n, (lo, hi) in zip(cur_shape, lo_hi, strict=True)]
            if _grid(cur_cropped, cur_b, cur_p) > 150:
                return None
        case["set"] = setters
    case["id"] = i
    return case


def _cases(n: int = 320, seed: int = 20240611) -> list[dict]:
    rng = random.Random(seed)
    out: list[dict] = []
    while len(out) < n:
        case = _make_case(rng, len(out))
        if case is not None:
            out.append(case)
    return out


CASES = _cases()


@pytest.fixture(scope="module")
def original_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    folder = tmp_path_factory.mktemp("blocks_vs_original")
    code = folder / "extract.py"
    code.write_text(EXTRACT)
    cases = folder / "cases.json"
    cases.write_text(json.dumps(CASES))
    results = folder / "results.json"
    run_old_checked(OLD_RUNNER, code, cases, results, timeout=TIMEOUT)
    return json.loads(results.read_text())


def _diff(ours: Any, theirs: Any, path: str = "") -> list[str]:
    if isinstance(ours, dict) and isinstance(theirs, dict):
        out = []
        for k in sorted(set(ours) | set(theirs)):
            out += _diff(ours.get(k, "<missing>"), theirs.get(k, "<missing>"), f"{path}.{k}")
        return out
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        return [
            d
            for i, (a, b) in enumerate(zip(ours, theirs, strict=True))
            for d in _diff(a, b, f"{path}[{i}]")
        ]
    if ours != theirs:
        return [f"{path}: ours={json.dumps(ours)[:300]} original={json.dumps(theirs)[:300]}"]
    return []


def test_cases_cover_the_forms() -> None:
    forms = {
        "crop": sum("crop" in c for c in CASES),
        "dim_split": sum("dim_split" in c for c in CASES),
        "blocks_number": sum("blocks_number" in c for c in CASES),
        "none": sum(None in c["shape_block"] for c in CASES),
        "prefix": sum(len(c["shape_block"]) < len(c["shape_full"]) for c in CASES),
        "setters": sum("set" in c for c in CASES),
        "padded": sum(bool(np.any(c["padding"])) for c in CASES),
    }
    for ndim in range(1, 5):
        forms[f"{ndim}d"] = sum(len(c["shape_full"]) == ndim for c in CASES)
    assert min(forms.values()) >= 15, forms


@pytest.mark.subprocess
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"case{c['id']}")
def test_same_as_original(case: dict, original_results: list[dict]) -> None:
    theirs = original_results[case["id"]]
    assert "ok" in theirs, f"the original failed on a case meant to work: {theirs}\n{case}"
    ours = extract_here(case)
    differences = _diff(ours, theirs["ok"])
    assert not differences, f"{case}\n" + "\n".join(differences[:20])


# --------------------------------------------------------------------------------------------
# The original's bugs, fixed. The original's answers are checked by the next test.

ORIGINAL_BUGS = r"""
import json, warnings
import numpy as np
warnings.simplefilter("ignore")
from split_dataset import Blocks

def attempt(f):
    try:
        r = f()
        return r.tolist() if isinstance(r, np.ndarray) else r
    except Exception as e:
        return type(e).__name__

g = Blocks((3, 3), (1, 1))
b = Blocks((8, 4, 6), (4, 2, 3))
out = {
    "neighbours_4": attempt(lambda: g.neighbour_blocks(4)),
    "neighbours_0": attempt(lambda: g.neighbour_blocks(0)),
    "neighbours_4_dims1": attempt(lambda: g.neighbour_blocks(4, dims=[1])),
    "contain_boundary": attempt(lambda: [int(i) for i in b.block_containing_coords((4, 2, 3))]),
    "getitem_int64": attempt(lambda: g[np.int64(1)]),
    "getitem_negative": attempt(lambda: g[-1]),
    "getitem_too_large": attempt(lambda: g[9]),
    "blocks_number_only": attempt(lambda: Blocks((100, 20, 40, 10), blocks_number=(1, 2, 2, 1)).shape_block),
    "dim_split_relative": attempt(lambda: Blocks((100, 20, 40, 10), dim_split=(1, 2), shape_block=(10, 20)).shape_block),
    "dim_split_blocks_number": attempt(lambda: Blocks((100, 20, 40, 10), dim_split=(1, 2), blocks_number=(2, 2)).shape_block),
    "int_shape_block": attempt(lambda: Blocks((6, 7), 3).shape_block),
    "no_block_shape": attempt(lambda: Blocks((6, 7)).shape_block),
    "padding_setter_int": attempt(lambda: setattr(Blocks((6, 7), (2, 3)), "padding", 1)),
    "zero_blocks_padding": attempt(lambda: Blocks((5,), (2,), padding=5).block_starts.shape),
}
print(json.dumps(out))
"""

#: What the original returns (verified by test_original_bugs_are_as_documented).
ORIGINAL_ANSWERS = {
    "neighbours_4": [0, 1, 3],  # misses 2, 5, 6, 7, 8
    "neighbours_0": [],  # misses 1, 3, 4
    "neighbours_4_dims1": [0, 1, 3],  # dims ignored: should be [3, 5]
    "contain_boundary": [0, 0, 0],  # should be [1, 1, 1]
    "getitem_int64": None,  # should be the slices of block 1
    "getitem_negative": "ValueError",  # should be the last block
    "getitem_too_large": "ValueError",
    "blocks_number_only": "TypeError",  # docstring form
    "dim_split_relative": "IndexError",  # docstring form
    "dim_split_blocks_number": "IndexError",  # docstring form
    "int_shape_block": "TypeError",
    "no_block_shape": "TypeError",
    "padding_setter_int": "TypeError",
    "zero_blocks_padding": [0, 1],  # padding >= axis length: no block at all
}


@pytest.mark.subprocess
def test_original_bugs_are_as_documented() -> None:
    proc = run_old_checked(ORIGINAL_BUGS)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == ORIGINAL_ANSWERS


def test_bug_n_blocks_and_slices_on_numpy2() -> None:
    # Original on numpy 2: AttributeError: module 'numpy' has no attribute 'product'
    # (n_blocks, hence slices(), EmptySplitDataset and save_to_split_dataset).
    assert int(np.__version__.split(".")[0]) >= 2
    b = Blocks((5, 7, 9), (2, 3, 4))
    assert b.n_blocks == 27
    assert type(b.n_blocks) is int
    assert len(list(b.slices())) == 27


@pytest.mark.parametrize(
    ("i_block", "dims", "expected"),
    [
        (4, None, [0, 1, 2, 3, 5, 6, 7, 8]),  # original: [0, 1, 3]
        (0, None, [1, 3, 4]),  # original: []
        (8, None, [4, 5, 7]),  # original: [4, 5, 7] (right by chance: no upper neighbour)
        (4, [1], [3, 5]),  # original: [0, 1, 3] (dims ignored)
        (4, [0], [1, 7]),  # original: [0, 1, 3]
        (4, [], []),  # original: [0, 1, 3]
        (np.int64(2), [-1], [1]),  # original: [1]
        (-1, None, [4, 5, 7]),  # original: ValueError
    ],
)
def test_bug_neighbour_blocks(i_block: Any, dims: Any, expected: list[int]) -> None:
    got = Blocks((3, 3), (1, 1)).neighbour_blocks(i_block, dims=dims)
    assert got.dtype == np.int64
    assert got.tolist() == expected


def test_bug_block_containing_coords_on_boundaries() -> None:
    b = Blocks((8, 4, 6), (4, 2, 3))
    # original: [0, 0, 0] (the block *ending* at the coordinates)
    assert b.block_containing_coords((4, 2, 3)) == [1, 1, 1]
    assert b.block_containing_coords((4, 2, 3), linear=True) == 7
    assert b.block_containing_coords((3, 1, 2)) == [0, 0, 0]
    # with a crop, coordinates are uncropped ones, like block_starts
    c = Blocks((10,), (4,), crop=((2, 0),))
    assert [c.block_containing_coords((x,))[0] for x in range(2, 10)] == [0] * 4 + [1] * 4
    # original: (6,) -> [0]
    with pytest.raises(BlockIndexError):
        c.block_containing_coords((1,))  # original: [0] (outside the cropped region)
    with pytest.raises(IndexError):
        c.block_containing_coords((10,))  # original: [1]


def test_bug_getitem_integer_types() -> None:
    g = Blocks((6, 6), (2, 3))
    expected = list(g.slices())
    assert g[np.int64(1)] == expected[1][1]  # original: None
    assert g[np.int16(2)] == expected[2][1]  # original: None
    assert g[np.uint8(3)] == expected[3][1]  # original: None
    assert g[-1] == expected[-1][1]  # original: ValueError
    assert g[-6] == expected[0][1]
    for bad in (6, -7, 100):
        with pytest.raises(IndexError):  # original: ValueError
            g[bad]
        with pytest.raises(ValueError, match="out of range"):  # a ValueError, as the original's
            g[bad]
    for bad in (1.0, "1", None, True, (0, 0)):
        with pytest.raises(TypeError):  # original: None
            g[bad]


def test_bug_constructor_docstring_forms() -> None:
    # The original's docstring: four ways to split axes 1 and 2 of (100, 20, 40, 10).
    # Original: first one fine, then TypeError, IndexError, IndexError.
    forms = [
        Blocks((100, 20, 40, 10), (None, 10, 20)),
        Blocks((100, 20, 40, 10), blocks_number=(1, 2, 2, 1)),
        Blocks((100, 20, 40, 10), dim_split=(1, 2), shape_block=(10, 20)),
        Blocks((100, 20, 40, 10), dim_split=(1, 2), blocks_number=(2, 2)),
    ]
    for b in forms:
        assert b.shape_block == (100, 10, 20, 10)
        assert b.block_starts.shape == (1, 2, 2, 1, 4)
    assert forms[1].dim_split == [0, 1, 2, 3]
    assert forms[2].dim_split == [1, 2] == forms[3].dim_split
    # dim_split order is the order of the relative entries
    assert Blocks((8, 6, 4), dim_split=(2, 1), shape_block=(2, 3)).shape_block == (8, 3, 2)
    # padding goes to the split axes only
    assert Blocks((8, 6, 4), dim_split=(1,), shape_block=(3,), padding=2).padding == [0, 2, 0]


def test_bug_int_shape_block_and_errors() -> None:
    # Original: TypeError: 'int' object is not iterable
    assert Blocks((6, 7), 3).shape_block == (3, 7)
    assert Blocks((6, 7), np.int64(4), padding=1).padding == [1, 0]
    # Original: TypeError / ValueError("max() arg is an empty sequence") / ZeroDivisionError
    with pytest.raises(ValueError, match="shape_block or blocks_number"):
        Blocks((6, 7))
    assert Blocks((6, 7), (None, None)).n_blocks == 1
    assert Blocks((0, 3), (2, 2)).grid_shape == (1, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shape_full": (6, 7), "shape_block": (2, 3, 4)}, "more entries"),
        ({"shape_full": (6, 7), "shape_block": (0, 3)}, "positive integer"),
        ({"shape_full": (6, 7), "shape_block": (2.5, 3)}, "integers or None"),
        ({"shape_full": (6, -1), "shape_block": (2, 3)}, "negative"),
        ({"shape_full": (6, 7), "shape_block": (2, 3), "padding": [1, 2, 3]}, "more entries"),
        ({"shape_full": (6, 7, 8), "shape_block": (2, None, 3), "padding": (1, 2)}, "axis 2"),
        ({"shape_full": (6, 7), "shape_block": (2, 3), "padding": -1}, "negative"),
        ({"shape_full": (6, 7), "shape_block": (2, 3), "crop": ((1, 1),)}, "pair per axis"),
        ({"shape_full": (6, 7), "shape_block": (2, 3), "crop": ((4, 3), (0, 0))}, "not fit"),
        ({"shape_full": (6, 7), "shape_block": (2, 3), "dim_split": (2,)}, "outside"),
        ({"shape_full": (6, 7), "shape_block": (2, 3), "dim_split": (0, 0)}, "repeats"),
        ({"shape_full": (6, 7, 8), "shape_block": (2,), "dim_split": (1, 2)}, "per split axis"),
        ({"shape_full": (6, 7), "blocks_number": (0, 1)}, "positive"),
        ({"shape_full": (6, 7), "shape_block": "ab"}, "sequence"),
        ({"shape_full": 6, "shape_block": (2,)}, "sequence of integers"),
    ],
)
def test_invalid_arguments_raise_value_error(kwargs: dict[str, Any], message: str) -> None:
    # The original raised TypeError, IndexError, ZeroDivisionError or nothing for these.
    with pytest.raises(ValueError, match=message):
        Blocks(**kwargs)


# A padding shorter than the number of axes, as the original's own test suite passes it
# (``Blocks(shape, shape_block=(3, 7), padding=(1, 2), ...)``): the original reads the missing
# entries as 0 when they belong to axes that are not split.
SHORT_PADDING = [
    {"shape_full": [10, 20, 30], "shape_block": [3, 7], "padding": [1, 2]},
    {"shape_full": [10, 20, 30], "shape_block": [3, 7, None], "padding": [1, 2]},
    {"shape_full": [10, 20, 30], "shape_block": [3], "padding": [1]},
    {"shape_full": [9, 11, 4, 5], "shape_block": [2, 3], "padding": [1, 1, 0]},
    {
        "shape_full": [10, 20, 30],
        "shape_block": [3, 7],
        "padding": [1, 2],
        "crop": [[1, 1], [2, 0], [0, 3]],
    },
    {"shape_full": [10, 20, 30], "shape_block": [3, 7], "padding": [1, 2], "dim_split": [0, 1]},
]


def _short_padding_cases() -> list[dict]:
    cases = []
    for i, case in enumerate(SHORT_PADDING):
        crop = case.get("crop", [[0, 0]] * len(case["shape_full"]))
        lows = [lo for lo, _ in crop]
        sizes = [n - lo - hi for n, (lo, hi) in zip(case["shape_full"], crop, strict=True)]
        # Off every block boundary (the original's block_containing_coords bug): block lengths
        # are 2, 3, 7 or a whole axis, and 1 and 5 are multiples of none.
        coords = [
            [lo + 1 for lo in lows],
            [lo + min(5, n - 1) for lo, n in zip(lows, sizes, strict=True)],
        ]
        take = [[lows, [lo + 5 for lo in lows]], [[lo + 1 for lo in lows], [lo + 4 for lo in lows]]]
        cases.append({**case, "take": take, "coords": coords, "id": i})
    return cases


@pytest.mark.subprocess
def test_short_padding_as_the_original(tmp_path: Path) -> None:
    cases = _short_padding_cases()
    (tmp_path / "extract.py").write_text(EXTRACT)
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    run_old_checked(
        OLD_RUNNER,
        tmp_path / "extract.py",
        tmp_path / "cases.json",
        tmp_path / "results.json",
        timeout=TIMEOUT,
    )
    results = json.loads((tmp_path / "results.json").read_text())
    for case, theirs in zip(cases, results, strict=True):
        assert "ok" in theirs, (case, theirs)
        assert theirs["ok"]["padding"] == case["padding"] + [0] * (
            len(case["shape_full"]) - len(case["padding"])
        )
        differences = _diff(extract_here(case), theirs["ok"])
        assert not differences, f"{case}\n" + "\n".join(differences[:20])


def test_bug_padding_at_least_axis_length() -> None:
    # Original: 0 blocks (block_starts of shape (0, 1)); here one block holding the axis.
    b = Blocks((5,), (2,), padding=5)
    assert b.grid_shape == (1,)
    assert list(b.slices(as_tuples=True)) == [((0,), ((0, 5),))]


def test_setters_recompute_and_reclamp() -> None:
    b = Blocks((10, 6, 4), (2, None, 2))
    b.padding = 1  # original: TypeError
    assert b.padding == [1, 0, 1]
    b.padding = (1, 2, 3)  # original kept [1, 2, 3]: axis 1 is not split
    assert b.padding == [1, 0, 3]
    b.shape_block = (3,)  # original: ValueError (broadcast)
    assert b.shape_block == (3, 6, 4)
    # The requested block shape is clamped to the current shape each time (the original kept the
    # first clamped value: Blocks((10,), (8,), crop=((3, 3),)) then crop=None gave blocks of 4).
    c = Blocks((10,), (8,), crop=((3, 3),))
    assert c.shape_block == (4,)
    c.crop = None
    assert c.shape_block == (8,)
    assert c.grid_shape == (2,)
    c.shape_full = (20,)
    assert c.block_starts[:, 0].tolist() == [0, 8, 16]
    with pytest.raises(ValueError, match="number of axes"):
        c.shape_full = (20, 3)
    with pytest.raises(ValueError, match="does not fit"):
        c.crop = ((15, 6),)


def test_fimpy_positional_form_and_merge_usage() -> None:
    # fimpy tests/test_merging.py:25 and roi_extraction/merging.py:15-19
    b = Blocks((1, 5, 8), (1, 3, 3), padding=(0, 2, 2))
    assert b.shape_full == (1, 5, 8)
    assert b.padding == [0, 2, 2]
    assert b.block_starts.shape == (1, 1, 2, 3)
    assert b.block_starts[0, 0, 1].tolist() == [0, 0, 3]
    assert b.block_ends[0, 0, 1].tolist() == [1, 5, 8]
    assert b.block_ends[0, 0, 0].tolist() == [1, 5, 5]


def test_doc_examples_and_pickle() -> None:
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    for test in finder.find(Blocks, "Blocks", globs={"Blocks": Blocks}):
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
    assert runner.summarize(verbose=False).attempted >= 6
    b = Blocks((7, 5), (3, None), padding=1, crop=((1, 0), (0, 1)))
    c = pickle.loads(pickle.dumps(b))
    assert c.serialize() == b.serialize()
    assert np.array_equal(c.block_starts, b.block_starts)
    assert "Blocks(" in repr(b)
    assert _blocks.__all__ == ["Blocks", "BlocksOfDataset"]


# --------------------------------------------------------------------------------------------
# Properties against brute force.


@st.composite
def geometries(draw: st.DrawFn) -> Blocks:
    ndim = draw(st.integers(1, 4))
    shape = draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim))
    crop = None
    if draw(st.booleans()):
        crop = []
        for n in shape:
            lo = draw(st.integers(0, n - 1))
            crop.append((lo, draw(st.integers(0, n - 1 - lo))))
    n_entries = draw(st.integers(0, ndim))
    block = draw(
        st.lists(st.one_of(st.none(), st.integers(1, 11)), min_size=n_entries, max_size=n_entries)
    )
    padding = draw(
        st.one_of(st.integers(0, 4), st.lists(st.integers(0, 4), min_size=ndim, max_size=ndim))
    )
    return Blocks(tuple(shape), tuple(block), padding=padding, crop=crop)


def _owner_labels(b: Blocks) -> np.ndarray:
    """Label every element of the cropped region with the linear index of its owning block."""
    labels = np.full(b.shape_cropped, -1)
    for i, (idx, bounds) in enumerate(b.slices(as_tuples=True)):
        owned = []
        for axis, (k, (s, e)) in enumerate(zip(idx, bounds, strict=True)):
            last = k == b.grid_shape[axis] - 1
            stop = e if last else s + b.shape_block[axis]
            owned.append(slice(s - b.starts[axis], stop - b.starts[axis]))
        assert (labels[tuple(owned)] == -1).all()
        labels[tuple(owned)] = i
    return labels


@given(geometries())
@settings(max_examples=300, deadline=None)
def test_blocks_tile_the_cropped_region(b: Blocks) -> None:
    labels = _owner_labels(b)
    assert (labels >= 0).all()
    for coords in itertools.product(*(range(n) for n in b.shape_cropped)):
        absolute = tuple(c + lo for c, lo in zip(coords, b.starts, strict=True))
        assert b.block_containing_coords(absolute, linear=True) == labels[coords]
        assert b.block_containing_coords(absolute) == list(
            np.unravel_index(labels[coords], b.grid_shape)
        )
    # files: owned region + padding, inside the cropped region
    lengths = b.block_ends - b.block_starts
    stops = np.asarray(b.starts) + np.asarray(b.shape_cropped)
    assert (b.block_ends <= stops).all()
    assert (b.block_starts >= np.asarray(b.starts)).all()
    assert (lengths <= np.asarray(b.shape_block) + np.asarray(b.padding)).all()
    assert b.n_blocks == labels.max() + 1 == math.prod(b.grid_shape)


@given(geometries(), st.data())
@settings(max_examples=200, deadline=None)
def test_indices_neighbours_and_getitem(b: Blocks, data: st.DataObject) -> None:
    grid = b.grid_shape
    assert b.grid.grid == grid
    assert b.grid.shape == b.shape_cropped
    tuples = list(b.slices(as_tuples=True))
    assert [idx for idx, _ in tuples] == list(itertools.product(*(range(g) for g in grid)))
    i = data.draw(st.integers(-b.n_blocks, b.n_blocks - 1))
    idx = b.linear_to_cartesian(i)
    assert idx == tuple(int(k) for k in np.unravel_index(i % b.n_blocks, grid))
    assert b.cartesian_to_linear(idx) == i % b.n_blocks
    assert b[i] == Blocks.block_to_slices(tuples[i % b.n_blocks][1])
    assert b[np.int64(i)] == b[i]
    with pytest.raises(IndexError):
        b[b.n_blocks]
    with pytest.raises(IndexError):
        b.cartesian_to_linear(tuple(g for g in grid))
    dims = data.draw(st.one_of(st.none(), st.sets(st.integers(0, b.n_dims - 1))))
    axes = set(range(b.n_dims)) if dims is None else dims
    expected = [
        j
        for j, (other, _) in enumerate(tuples)
        if other != idx
        and all(
            abs(o - k) <= 1 if a in axes else o == k
            for a, (o, k) in enumerate(zip(other, idx, strict=True))
        )
    ]
    got = b.neighbour_blocks(i, dims=None if dims is None else sorted(dims))
    assert got.tolist() == expected


@given(geometries(), st.data())
@settings(max_examples=200, deadline=None)
def test_blocks_to_take_reassembles_numpy(b: Blocks, data: st.DataObject) -> None:
    """Reading the pieces blocks_to_take names, as the original's reader did, gives numpy's."""
    full = np.arange(math.prod(b.shape_full)).reshape(b.shape_full)
    start, end = [], []
    for lo, n in zip(b.starts, b.shape_cropped, strict=True):
        a = data.draw(st.integers(0, n - 1))
        start.append(lo + a)
        end.append(lo + data.draw(st.integers(a + 1, n)))
    ranges, first, last = b.blocks_to_take(start, end)
    pieces = np.empty(tuple(r[1] - r[0] for r in ranges), dtype=object)
    for offset in itertools.product(*(range(r[1] - r[0]) for r in ranges)):
        idx = tuple(r[0] + o for r, o in zip(ranges, offset, strict=True))
        region = []
        for axis, k in enumerate(idx):
            s = int(b.block_starts[idx][axis])
            lo = first[axis] if k == ranges[axis][0] else 0
            hi = last[axis] if k == ranges[axis][1] - 1 else b.shape_block[axis]
            region.append(slice(s + lo, s + hi))
        pieces[offset] = full[tuple(region)]
    got = np.block(pieces.tolist()) if pieces.ndim > 0 else pieces[()]
    want = full[tuple(slice(s, e) for s, e in zip(start, end, strict=True))]
    np.testing.assert_array_equal(got, want)


@given(geometries())
@settings(max_examples=100, deadline=None)
def test_drop_dim_and_serialize(b: Blocks) -> None:
    ser = b.serialize()
    assert list(ser) == ["shape_full", "shape_block", "crop_start", "crop_end", "padding"]
    assert json.loads(json.dumps(ser)) == json.loads(json.dumps(ser))
    again = Blocks(
        ser["shape_full"],
        ser["shape_block"],
        padding=ser["padding"],
        crop=list(zip(ser["crop_start"], ser["crop_end"], strict=True)),
    )
    assert np.array_equal(again.block_starts, b.block_starts)
    assert np.array_equal(again.block_ends, b.block_ends)
    np.testing.assert_array_equal(b.centres(), (b.block_starts + b.block_ends) / 2)
    if b.n_dims > 1:
        for k in (0, -1):
            d = b.drop_dim(k)
            keep = [a for a in range(b.n_dims) if a != k % b.n_dims]
            assert d.shape_full == tuple(b.shape_full[a] for a in keep)
            assert d.shape_block == tuple(b.shape_block[a] for a in keep)
            assert d.padding == [b.padding[a] for a in keep]
            assert d.crop == tuple(b.crop[a] for a in keep)
