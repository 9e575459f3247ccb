"""``--select``: a numpy basic index written as text (``"0:100, :, ::2"``).

Items are separated by commas, one per axis from the first: an integer (``5``, ``-1``: takes
that element and drops the axis), a slice ``start:stop:step`` with any part left out (``:``,
``10:``, ``::2``, ``::-1``: keeps the axis) or ``...`` (the axes not named, whole). Axes after
the items are whole, as in numpy. The text is matched against this grammar, never evaluated.

Unlike numpy, an integer beyond the axis and a selection with no element along an axis are
errors: each names the axis.

A selection is resolved against a shape into one :data:`Pick` per axis (an ``int``, or the
``range`` of indices kept), from which follow the selected shape, the region of the source
that a region of the selection reads (:func:`source_region`), the chunks of the selection that
fall in the source's chunks (:func:`selected_chunks`) and the physical metadata carried along
(:func:`selected_metadata`: a step of 2 doubles the axis' spacing, an integer drops the axis).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import Any, NamedTuple, TypeAlias

import numpy as np

from splitds_dask._cli.messages import PROG, UsageError

__all__ = [
    "Pick",
    "Selection",
    "resolve",
    "selected_chunks",
    "selected_metadata",
    "selected_shape",
    "selection_arg",
    "source_region",
]

#: What a selection keeps of one axis: one index (the axis is dropped), or a range of indices.
Pick: TypeAlias = "int | range"

_INT = r"\s*([+-]?\d+)?\s*"
_SLICE = re.compile(rf"^{_INT}:{_INT}(?::{_INT})?$")
_INDEX = re.compile(r"^\s*[+-]?\d+\s*$")
_MAX_ITEMS = 64  # far beyond any array's axes: a bound on work for nonsense input


class Selection(NamedTuple):
    """A parsed ``--select``: its text and its items (ints, slices, ``Ellipsis``)."""

    text: str
    items: tuple[Any, ...]


def _parse_item(item: str, text: str) -> Any:
    if item.strip() == "...":
        return Ellipsis
    if _INDEX.match(item):
        return int(item)
    match = _SLICE.match(item)
    if match is None:
        raise ValueError(
            f"--select {text!r}: {item.strip()!r} is not an integer, a slice start:stop:step or ..."
        )
    start, stop, step = (None if g is None else int(g) for g in match.groups())
    if step == 0:
        raise ValueError(f"--select {text!r}: slice step cannot be zero")
    return slice(start, stop, step)


def parse_selection(text: str) -> Selection:
    """Parse ``--select`` text (see the module docstring).

    Raises
    ------
    ValueError
        One line saying which item is malformed.
    """
    items = text.split(",")
    if len(items) > _MAX_ITEMS:
        raise ValueError(f"--select: more than {_MAX_ITEMS} items")
    if not text.strip():
        raise ValueError("--select: empty selection (':' selects a whole axis)")
    if len(items) > 1 and not items[-1].strip():
        items = items[:-1]  # "5," as numpy reads (5,)
    parsed = tuple(_parse_item(item, text) for item in items)
    if sum(item is Ellipsis for item in parsed) > 1:
        raise ValueError(f"--select {text!r}: at most one ...")
    return Selection(text, parsed)


def selection_arg(text: str) -> Selection:
    """The ``--select`` argument type."""
    try:
        return parse_selection(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _axis_name(axis: int, names: Sequence[str] | None) -> str:
    return f"axis {axis} ({names[axis]})" if names and axis < len(names) else f"axis {axis}"


def resolve(
    selection: Selection, shape: Sequence[int], names: Sequence[str] | None = None
) -> tuple[Pick, ...]:
    """What ``selection`` keeps of each axis of an array of ``shape``.

    ``names`` (the axes' names) make the messages clearer.

    Raises
    ------
    UsageError
        More items than axes, an integer beyond its axis, or nothing selected along an axis
        (one line naming the axis).
    """
    items = list(selection.items)
    named = sum(item is not Ellipsis for item in items)
    if named > len(shape):
        raise UsageError(
            f"{PROG}: error: --select {selection.text!r} names {named} axes, the data has "
            f"{len(shape)} (shape {tuple(shape)})"
        )
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items[at : at + 1] = [slice(None)] * (len(shape) - named)
    items += [slice(None)] * (len(shape) - len(items))
    picks: list[Pick] = []
    for axis, (item, n) in enumerate(zip(items, shape, strict=True)):
        where = _axis_name(axis, names)
        if isinstance(item, int):
            if not -n <= item < n:
                raise UsageError(
                    f"{PROG}: error: --select {selection.text!r}: index {item} is out of range "
                    f"for {where} of length {n}"
                )
            picks.append(item % n)
            continue
        kept = range(*item.indices(n))
        if len(kept) == 0:
            raise UsageError(
                f"{PROG}: error: --select {selection.text!r} selects nothing along {where} "
                f"of length {n}"
            )
        picks.append(kept)
    return tuple(picks)


def selected_shape(picks: Sequence[Pick]) -> tuple[int, ...]:
    """The shape of the selection."""
    return tuple(len(p) for p in picks if isinstance(p, range))


def _as_slice(kept: range) -> slice:
    """The slice of the source that reads ``kept`` (a range of at least one index)."""
    last = kept[-1]
    stop = last + (1 if kept.step > 0 else -1)
    return slice(kept.start, None if stop < 0 else stop, kept.step)


def source_region(picks: Sequence[Pick], region: Sequence[slice]) -> tuple[int | slice, ...]:
    """The numpy index of the source that reads ``region`` (step-1 slices of the selection).

    Returns
    -------
    tuple of int and slice
        One entry per source axis, for the source's reader.
    """
    out: list[int | slice] = []
    kept_axes = iter(region)
    for pick in picks:
        if isinstance(pick, int):
            out.append(pick)
            continue
        part = pick[next(kept_axes)]
        # An empty part (dask asks for empty regions of empty chunks) reads nothing.
        out.append(_as_slice(part) if len(part) else slice(0, 0))
    return tuple(out)


def selected_chunks(
    picks: Sequence[Pick], source_chunks: Sequence[Sequence[int]]
) -> tuple[tuple[int, ...], ...]:
    """Chunks of the selection such that each lies within one chunk of the source.

    Along each kept axis, a new chunk starts where the selected indices enter another source
    chunk, so each task of the selection reads from as few source chunks (block files) as the
    selection allows.
    """
    out = []
    for pick, chunks in zip(picks, source_chunks, strict=True):
        if isinstance(pick, int):
            continue
        ends = np.cumsum(chunks)
        which = np.searchsorted(ends, np.asarray(pick), side="right")
        starts = np.flatnonzero(np.diff(which)) + 1
        bounds = np.concatenate(([0], starts, [len(pick)]))
        out.append(tuple(int(n) for n in np.diff(bounds)))
    return tuple(out)


def selected_metadata(picks: Sequence[Pick], metadata: dict[str, Any]) -> dict[str, Any]:
    """The physical metadata (``axes``, ``scale``, ``units``) of the selection.

    An axis taken by an integer is dropped from each; a step multiplies the spacing by its
    size (``::2`` doubles it; ``::-1`` keeps it: the spacing is a distance, whatever the
    direction). Other keys are kept as they are.
    """
    kept = [i for i, p in enumerate(picks) if isinstance(p, range)]
    out = dict(metadata)
    for key in ("axes", "units"):
        if key in metadata:
            out[key] = tuple(metadata[key][i] for i in kept)
    if "scale" in metadata:
        scale = metadata["scale"]
        out["scale"] = tuple(
            None if scale[i] is None else float(scale[i]) * abs(picks[i].step)  # type: ignore[union-attr]
            for i in kept
        )
    return out
