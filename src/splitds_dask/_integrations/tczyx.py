"""A 5-D ``TCZYX`` view of split datasets, for bioio: transposed, missing axes added, channels
stacked, and any selection read as a window of the blocks.

bioio wants every image as ``TCZYX``. Building that from a dataset's dask array with dask
operations (``transpose``, ``x[:, None]``, ``concatenate``) puts a layer between a selection and
the read, so a single plane would read whole blocks. :class:`TczyxView` is the array dask reads
instead: an object with numpy's ``shape``, ``dtype`` and indexing whose ``view[key]`` reads only
the elements ``key`` touches, through the datasets' block readers. In dask's default mode a
selection of the dask array over it is fused into the read. It holds readers only (small,
picklable, no open file), like every task of the package.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from splitds_dask._indexing import AxisSelection, OrthogonalSelection, normalize_index
from splitds_dask._reader import BlockReader

__all__ = ["TCZYX", "TczyxSource", "TczyxView"]

TCZYX = "TCZYX"
_C = TCZYX.index("C")


class TczyxSource(NamedTuple):
    """One dataset of a view: its reader and the ``TCZYX`` letter of each of its axes.

    Attributes
    ----------
    reader : BlockReader
        The dataset's reader.
    letters : str
        One distinct letter of ``TCZYX`` per axis of the dataset, in its order (e.g. ``"TZYX"``).
    """

    reader: BlockReader
    letters: str

    @property
    def channels(self) -> int:
        """How many channels the dataset gives (1 without a ``C`` axis)."""
        return self.reader.shape[self.letters.index("C")] if "C" in self.letters else 1

    def length(self, letter: str) -> int:
        return self.reader.shape[self.letters.index(letter)] if letter in self.letters else 1


def _length(selection: AxisSelection) -> int:
    if isinstance(selection, slice):
        return len(range(selection.start, selection.stop, selection.step))
    return len(selection)


class TczyxView:
    """Datasets as one ``TCZYX`` array, their channels one after another along ``C``.

    Parameters
    ----------
    sources : sequence of TczyxSource
        The datasets, of one dtype and of equal lengths along ``T``, ``Z``, ``Y`` and ``X``.

    Examples
    --------
    >>> import numpy as np, splitds_dask as sd
    >>> a = np.arange(4 * 3 * 5, dtype=np.uint8).reshape(4, 3, 5)
    >>> ds = sd.to_split_dataset(a, "tyx", block_shape=2, axes="tyx")
    >>> view = TczyxView([TczyxSource(ds.reader, "TYX")])
    >>> view.shape
    (4, 1, 1, 3, 5)
    >>> bool((view[2, 0, 0] == a[2]).all())
    True
    """

    def __init__(self, sources: Sequence[TczyxSource]) -> None:
        self.sources = tuple(sources)
        if not self.sources:
            raise ValueError("a view needs at least one dataset")
        first = self.sources[0]
        for source in self.sources:
            letters, ndim = source.letters, source.reader.ndim
            if len(letters) != ndim or len(set(letters)) != ndim or set(letters) - set(TCZYX):
                raise ValueError(
                    f"{letters!r} does not name the {ndim} axes of {source.reader.root} with "
                    f"distinct letters of {TCZYX}"
                )
            lengths = [source.length(d) for d in TCZYX if d != "C"]
            if lengths != [first.length(d) for d in TCZYX if d != "C"]:
                raise ValueError("the datasets of a view differ in length along T, Z, Y or X")
            if source.reader.dtype != first.reader.dtype:
                raise ValueError("the datasets of a view differ in dtype")
        self.dtype = first.reader.dtype
        self.shape = tuple(
            sum(s.channels for s in self.sources) if d == "C" else first.length(d) for d in TCZYX
        )
        self.ndim = len(TCZYX)

    def __dask_tokenize__(self) -> Any:
        return (
            type(self).__qualname__,
            tuple((s.reader.__dask_tokenize__(), s.letters) for s in self.sources),
        )

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> Any:
        """Exactly ``numpy.asarray(view)[key]``, reading only the elements it touches."""
        selection = normalize_index(key, self.shape)
        out = np.empty(selection.shape, dtype=self.dtype)
        if out.size:
            wanted = np.arange(self.shape[_C])[selection.axes[_C]]
            start = filled = 0
            for source in self.sources:
                local = wanted[(wanted >= start) & (wanted < start + source.channels)] - start
                if local.size:
                    part = self._read(source, selection.axes, local)
                    out[:, filled : filled + local.size] = part
                    filled += local.size
                start += source.channels
        return out if selection.post is None else out[selection.post]

    @staticmethod
    def _read(
        source: TczyxSource, axes: tuple[AxisSelection, ...], channels: np.ndarray
    ) -> np.ndarray:
        """The selection ``axes`` (``channels`` along C) of one dataset, in TCZYX order."""
        own: list[AxisSelection] = []
        for letter in source.letters:
            if letter == "C":
                first, last = int(channels[0]), int(channels[-1])
                contiguous = last - first + 1 == channels.size
                own.append(slice(first, last + 1, 1) if contiguous else channels)
            else:
                own.append(axes[TCZYX.index(letter)])
        shape = tuple(_length(s) for s in own)
        part = source.reader.read_orthogonal(OrthogonalSelection(tuple(own), shape, None))
        order = [source.letters.index(d) for d in TCZYX if d in source.letters]
        part = part.transpose(order)
        lengths = [channels.size if d == "C" else _length(axes[i]) for i, d in enumerate(TCZYX)]
        # Axes the dataset lacks have length 1, and a non-empty selection keeps that element.
        return part.reshape(lengths)

    def chunks(self) -> tuple[tuple[int, ...], ...]:
        """One chunk per block of the first dataset (per dataset along ``C``)."""
        first = self.sources[0]
        out = []
        for letter in TCZYX:
            if letter == "C":
                out.append(tuple(c for s in self.sources for c in _source_chunks(s, "C")))
            else:
                out.append(_source_chunks(first, letter))
        return tuple(out)


def _source_chunks(source: TczyxSource, letter: str) -> tuple[int, ...]:
    if letter not in source.letters:
        return (1,)
    return source.reader.grid.chunks[source.letters.index(letter)]
