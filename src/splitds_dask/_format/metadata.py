"""The dataset's metadata: finding, parsing and validating it, and writing it back.

Every variant found in the wild is accepted (see the README's format section): the original
``split_dataset`` keys, sashimi's ``crop``/``voxel_size``, brunoise and fimpy files (extra
``files`` key), any file name ending in ``stack_metadata.json``, and legacy datasets whose
metadata lives inside the block files. Only ``shape_full``, ``shape_block`` and ``padding``
define geometry; ``crop*`` describes what a writer already applied and is never re-applied.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from splitds_dask._errors import MetadataError, NotASplitDatasetError, SplitDatasetError
from splitds_dask._storage.atomic import atomic_file

__all__ = [
    "MAX_METADATA_BYTES",
    "METADATA_NAME",
    "DatasetMetadata",
    "default_axis_order",
    "find_metadata_file",
    "is_split_dataset",
    "metadata_json_bytes",
    "original_metadata_dict",
    "parse_metadata",
    "parse_metadata_json",
    "read_legacy_metadata",
    "read_metadata_json",
    "write_metadata_json",
]

METADATA_NAME = "stack_metadata.json"
_METADATA_SUFFIX = "stack_metadata.json"
# Refuse metadata far larger or deeper than any real one before parsing it (a real file is a
# few hundred bytes, or about a megabyte with fimpy's list of 100,000 file names, and nests 2
# deep): parsing costs memory in proportion to the text and stack in proportion to its depth.
MAX_METADATA_BYTES = 16 * 1024 * 1024
_MAX_DEPTH = 100
# numpy arrays have at most 64 axes; lengths must fit the int64 that numpy and dask count in.
_MAX_AXES = 64
_MAX_LENGTH = 2**63 - 1
# Legacy metadata: at most this many entries per sequence, each at most this many elements.
_MAX_LEGACY_ENTRIES = _MAX_AXES


@dataclass(frozen=True)
class DatasetMetadata:
    """Parsed metadata of a split dataset.

    Attributes
    ----------
    shape : tuple of int
        ``shape_full`` as declared (the files may hold less, see ``SplitDataset``).
    block_shape : tuple of int or None
        ``shape_block`` as declared; may be shorter than ``shape`` and may exceed it.
    padding : tuple of int
        Overlap of each block with its successor, per axis.
    resolution : tuple of float or None
        The ``resolution`` key, if present.
    axis_order : str or None
        The ``axis_order`` key, if present.
    source : Path, str or None
        The file the metadata was read from (its URL, for a remote dataset).
    raw : dict
        Everything that was parsed, in file order.
    """

    shape: tuple[int, ...]
    block_shape: tuple[int | None, ...]
    padding: tuple[int, ...]
    resolution: tuple[float, ...] | None = None
    axis_order: str | None = None
    source: Path | str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def ndim(self) -> int:
        return len(self.shape)


def _int_list(value: Any, key: str, source: object, *, allow_none: bool = False) -> list:
    if not isinstance(value, (list, tuple)):
        raise MetadataError(f"{source}: '{key}' must be a list of integers, got {_short(value)}")
    if len(value) > _MAX_AXES:
        raise MetadataError(
            f"{source}: '{key}' has {len(value)} entries; arrays have at most {_MAX_AXES} axes"
        )
    out: list[int | None] = []
    for item in value:
        if item is None and allow_none:
            out.append(None)
        elif isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_)):
            out.append(int(item))
        elif isinstance(item, float) and item.is_integer():
            # sashimi once wrote block lengths through np.trunc, i.e. as floats.
            out.append(int(item))
        else:
            raise MetadataError(
                f"{source}: '{key}' must be a list of integers, got {_short(value)}"
            )
        if out[-1] is not None and abs(out[-1]) > _MAX_LENGTH:
            raise MetadataError(f"{source}: '{key}' entry {out[-1]} does not fit a 64-bit integer")
    return out


def _short(value: Any, limit: int = 200) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages about arbitrary input."""
    try:
        text = repr(value)
    except RecursionError:
        return f"a deeply nested {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 5] + " ...]"


def _check_files(value: Any, source: object) -> None:
    """fimpy's ``files`` list (never used to open anything): plain names inside the folder only.

    A list naming ``../x.h5`` or an absolute path would point a reader outside the dataset; such
    metadata is refused rather than trusted.
    """
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise MetadataError(f"{source}: 'files' must be a list of file names")
    for name in value:
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\", "~")) or ":" in parts[0] or ".." in parts or not name:
            raise MetadataError(
                f"{source}: 'files' entry {name!r} is not a file name inside the dataset folder"
            )


def _parse_shape(value: Any, source: object) -> list[int]:
    shape = _int_list(value, "shape_full", source)
    if not shape:
        raise MetadataError(f"{source}: 'shape_full' is empty")
    if any(n < 0 for n in shape):
        raise MetadataError(f"{source}: 'shape_full' has a negative length: {shape}")
    return shape


def _parse_block_shape(value: Any, shape: list[int], source: object) -> list[int | None]:
    block_shape = _int_list(value, "shape_block", source, allow_none=True)
    if len(block_shape) > len(shape):
        raise MetadataError(
            f"{source}: 'shape_block' {block_shape} has more axes than 'shape_full' {shape}"
        )
    if any(b is not None and b < 1 for b in block_shape):
        raise MetadataError(f"{source}: 'shape_block' entries must be positive: {block_shape}")
    return block_shape


def _parse_padding(
    value: Any, shape: list[int], block_shape: list[int | None], source: object
) -> list[int]:
    """One padding per axis (a number applies to all), 0 on the axes that are not split."""
    padding_raw = 0 if value is None else value
    if isinstance(padding_raw, (int, np.integer)) and not isinstance(padding_raw, bool):
        padding = _int_list([padding_raw], "padding", source) * len(shape)
    else:
        padding = _int_list(padding_raw, "padding", source)
        padding += [0] * (len(shape) - len(padding))
    if len(padding) != len(shape) or any(p < 0 for p in padding):
        raise MetadataError(f"{source}: 'padding' {_short(padding_raw)} does not fit shape {shape}")
    # Only split axes carry padding (an unsplit axis has a single block).
    return [
        p if i < len(block_shape) and block_shape[i] is not None else 0
        for i, p in enumerate(padding)
    ]


def _parse_resolution(value: Any, source: object) -> tuple[float, ...] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(r, (int, float)) and not isinstance(r, bool) for r in value
    ):
        raise MetadataError(f"{source}: 'resolution' must be a list of numbers: {_short(value)}")
    return tuple(float(r) for r in value)


def parse_metadata(raw: Mapping[str, Any], *, source: object = "<metadata>") -> DatasetMetadata:
    """Validate a metadata mapping and return the geometry it declares.

    Raises
    ------
    MetadataError
        Naming ``source`` and the offending key.
    """
    if not isinstance(raw, Mapping):
        raise MetadataError(f"{source}: metadata must be a JSON object, got {type(raw).__name__}")
    for key in ("shape_full", "shape_block"):
        if key not in raw:
            raise MetadataError(
                f"{source}: missing key '{key}' (a split dataset's metadata needs "
                "'shape_full' and 'shape_block')"
            )
    shape = _parse_shape(raw["shape_full"], source)
    block_shape = _parse_block_shape(raw["shape_block"], shape, source)
    padding = _parse_padding(raw.get("padding", 0), shape, block_shape, source)
    resolution = _parse_resolution(raw.get("resolution"), source)
    if "files" in raw:
        _check_files(raw["files"], source)
    axis_order = raw.get("axis_order")
    if axis_order is not None and not isinstance(axis_order, str):
        raise MetadataError(f"{source}: 'axis_order' must be a string: {_short(axis_order)}")

    return DatasetMetadata(
        shape=tuple(shape),
        block_shape=tuple(block_shape),
        padding=tuple(padding),
        resolution=resolution,
        axis_order=axis_order,
        source=_source(source),
        raw=dict(raw),
    )


def _source(source: object) -> Path | str | None:
    if isinstance(source, str) and "://" in source:  # a URL: a Path would fold its "//"
        return source
    return Path(source) if isinstance(source, (str, os.PathLike)) else None


def find_metadata_file(root: Path) -> Path | None:
    """The metadata file of ``root``.

    ``stack_metadata.json``, else the first ``*stack_metadata.json`` in name order.
    """
    exact = root / METADATA_NAME
    if exact.is_file():
        return exact
    candidates = sorted(
        entry.name
        for entry in os.scandir(root)
        if entry.name.endswith(_METADATA_SUFFIX) and entry.is_file()
    )
    return root / candidates[0] if candidates else None


def is_split_dataset(path: Path) -> bool:
    """Whether ``path`` is a folder with split-dataset metadata (what writers may replace)."""
    return path.is_dir() and find_metadata_file(path) is not None


def _nesting_depth(value: Any) -> int:
    """How deep lists and dicts nest in ``value`` (iteratively: no recursion on its depth)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            deepest = max(deepest, depth)
            stack.extend((item, depth + 1) for item in node if isinstance(item, (list, dict)))
    return deepest


def read_metadata_json(path: Path) -> DatasetMetadata:
    """Read and validate a metadata json file.

    A file larger than 16 MiB is refused before parsing, and one whose JSON nests deeper than
    100 levels when parsing: both are a :class:`MetadataError` naming the file.
    """
    try:
        with open(path, "rb") as f:
            text = f.read(MAX_METADATA_BYTES + 1)
    except OSError as exc:
        raise MetadataError(f"{path}: cannot read the metadata json: {exc}") from exc
    return parse_metadata_json(text, source=path)


def parse_metadata_json(text: bytes, *, source: object) -> DatasetMetadata:
    """Validate the bytes of a metadata json file (see :func:`read_metadata_json`).

    ``source`` names the file in errors (a path, or a URL for a remote dataset).
    """
    path = source
    if len(text) > MAX_METADATA_BYTES:
        raise MetadataError(
            f"{path}: larger than {MAX_METADATA_BYTES >> 20} MiB, too large for a metadata file"
        )
    try:
        raw = json.loads(text.decode("utf-8"))
    except RecursionError:
        raise MetadataError(
            f"{path}: the metadata json nests too deep (at most {_MAX_DEPTH} levels)"
        ) from None
    except ValueError as exc:  # not UTF-8, not JSON, or an integer of over 4,300 digits
        raise MetadataError(f"{path}: cannot read the metadata json: {exc}") from exc
    depth = _nesting_depth(raw)
    if depth > _MAX_DEPTH:
        raise MetadataError(
            f"{path}: the metadata json nests {depth} levels deep (at most {_MAX_DEPTH})"
        )
    return parse_metadata(raw, source=path)


def _legacy_sequence(group: Any, path: Path, name: str) -> list:
    """A tuple/list saved by flammkuchen as a group of attributes ``i0 .. iN``.

    Sizes are checked before anything is read: a damaged or hostile file may declare an array
    of any size where a few integers belong.
    """
    import h5py

    node = group.get(name)
    if node is None:
        raise MetadataError(f"{path}: legacy metadata group has no '{name}'")
    if isinstance(node, h5py.Dataset):
        if node.size > _MAX_LEGACY_ENTRIES or node.ndim > 1:
            raise MetadataError(
                f"{path}: legacy '{name}' holds an array of shape {node.shape}, not a short list "
                "of integers"
            )
        values = node[()]
        if not np.issubdtype(np.asarray(values).dtype, np.integer):
            raise MetadataError(f"{path}: legacy '{name}' is not integer: {_short(values)}")
        return [int(v) for v in np.atleast_1d(values)]
    if not isinstance(node, h5py.Group):
        raise MetadataError(f"{path}: legacy '{name}' is neither a dataset nor a group")
    out = []
    i = 0
    while f"i{i}" in node.attrs:
        if i == _MAX_LEGACY_ENTRIES:
            raise MetadataError(
                f"{path}: legacy '{name}' has more than {_MAX_LEGACY_ENTRIES} entries"
            )
        shape = node.attrs.get_id(f"i{i}").shape
        if shape not in ((), None):
            raise MetadataError(f"{path}: legacy '{name}' entry i{i} is not an integer")
        value = node.attrs[f"i{i}"]  # h5py returns raw values; nothing is unpickled
        if isinstance(value, (bytes, np.bytes_, str)):
            raise MetadataError(f"{path}: legacy '{name}' entry i{i} is not an integer")
        value = np.asarray(value)
        if value.ndim != 0 or not np.issubdtype(value.dtype, np.integer):
            raise MetadataError(f"{path}: legacy '{name}' entry i{i} is not an integer")
        out.append(int(value))
        i += 1
    return out


def read_legacy_metadata(path: Path, *, locking: bool | str | None = None) -> DatasetMetadata:
    """Metadata of a pre-json dataset, from the ``/stack_metadata`` group of a block file.

    Only integer attributes are read, through h5py: nothing in the file is ever unpickled.
    """
    import h5py

    try:
        f = h5py.File(path, "r", locking=locking)
    except OSError as exc:
        raise MetadataError(f"{path}: cannot open to read its legacy metadata: {exc}") from exc
    with f:
        try:
            # A hard link only: an external link would open another file, anywhere (a FIFO hangs).
            linked = isinstance(f.get("stack_metadata", getlink=True), h5py.HardLink)
            group = f.get("stack_metadata") if linked else None
            if not isinstance(group, h5py.Group):
                raise NotASplitDatasetError(
                    f"{path.parent}: no *stack_metadata.json and no legacy /stack_metadata "
                    f"group in {path.name}: not a split dataset"
                )
            shape = _legacy_sequence(group, path, "full_size")
            block_shape = _legacy_sequence(group, path, "block_size")
        except SplitDatasetError:
            raise
        except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
            # What h5py raises for a damaged file.
            raise MetadataError(
                f"{path}: cannot read its legacy metadata: {type(exc).__name__}: {exc}"
            ) from exc
    return parse_metadata({"shape_full": shape, "shape_block": block_shape}, source=path)


def default_axis_order(ndim: int) -> str:
    """Axis names written when none are given.

    ``tzyx`` for 4-D data, else the last ``ndim`` letters of ``tczyx``.
    """
    return (
        "tzyx"
        if ndim == 4
        else "tczyx"[-ndim:]
        if ndim <= 5
        else "".join(f"d{i}" for i in range(ndim))
    )


def original_metadata_dict(
    shape_full: Sequence[int],
    shape_block: Sequence[int],
    *,
    crop_start: Sequence[int] | None = None,
    crop_end: Sequence[int] | None = None,
    padding: Sequence[int] | None = None,
    resolution: Sequence[float] | None = None,
    axis_order: str | None = None,
) -> dict[str, Any]:
    """The metadata dict with the original package's keys, in its order.

    Old installs of ``split_dataset`` read ``shape_full``, ``shape_block`` and ``resolution`` from
    it; the other keys are kept so that the files look like those every other writer produces.
    """
    ndim = len(shape_full)
    zeros = [0] * ndim
    return {
        "shape_full": [int(n) for n in shape_full],
        "shape_block": [int(b) for b in shape_block],
        "crop_start": [int(c) for c in (crop_start if crop_start is not None else zeros)],
        "crop_end": [int(c) for c in (crop_end if crop_end is not None else zeros)],
        "padding": [int(p) for p in (padding if padding is not None else zeros)],
        "resolution": [
            r.item() if isinstance(r, np.generic) else r
            for r in (resolution if resolution is not None else [1] * ndim)
        ],
        "axis_order": axis_order if axis_order is not None else default_axis_order(ndim),
    }


def write_metadata_json(
    folder: str | os.PathLike[str], metadata: Mapping[str, Any], *, name: str = METADATA_NAME
) -> Path:
    """Write ``metadata`` as ``folder/name`` atomically (temporary file, then rename).

    Readers see either the previous file or the complete new one, never a partial one.
    """
    folder = Path(folder)
    target = folder / name
    with atomic_file(target, durable=True) as tmp:
        tmp.write_bytes(metadata_json_bytes(metadata))
    return target


def metadata_json_bytes(metadata: Mapping[str, Any]) -> bytes:
    """The text of a metadata json file holding ``metadata``, as every writer here writes it."""
    return json.dumps(dict(metadata)).encode("utf-8")
