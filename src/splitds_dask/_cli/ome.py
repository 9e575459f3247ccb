"""OME-Zarr (OME-NGFF) metadata: the ``multiscales`` attributes written for a converted array,
and the full-resolution level, axes, units and spacing read from an OME-Zarr source."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from splitds_dask._errors import FormatError

__all__ = ["OmeLevel", "first_level", "level_metadata", "ome_multiscales"]


class OmeLevel(NamedTuple):
    """The first (full-resolution) level of an OME-Zarr image and what it says of its axes."""

    path: str  # of the level's array inside the group
    axes: tuple[str, ...]  # names, possibly empty
    units: tuple[str | None, ...]
    scale: tuple[float, ...] | None


def first_level(attrs: Mapping[str, Any], where: str) -> OmeLevel:
    """The first level of the first multiscale image described by a zarr group's ``attrs``.

    Raises
    ------
    FormatError
        No usable ``multiscales`` metadata (``where`` names the group in the message).
    """
    multiscales = attrs.get("ome", attrs).get("multiscales")
    try:
        image = multiscales[0]
        level = image["datasets"][0]
        listed = image.get("axes", [])
        axes = tuple(a["name"] if isinstance(a, dict) else str(a) for a in listed)
        units = tuple(a.get("unit") if isinstance(a, dict) else None for a in listed)
        scale = next(
            (
                t["scale"]
                for t in level.get("coordinateTransformations", [])
                if t["type"] == "scale"
            ),
            None,
        )
        path = str(level["path"])
    except (TypeError, KeyError, IndexError):
        raise FormatError(f"{where}: no OME-Zarr multiscales metadata") from None
    return OmeLevel(
        path=path,
        axes=axes,
        units=tuple(u if isinstance(u, str) and u else None for u in units),
        scale=None if scale is None else tuple(float(s) for s in scale),
    )


def level_metadata(level: OmeLevel, ndim: int) -> dict[str, Any]:
    """The ``axes``, ``scale`` and ``units`` a conversion carries along, where they fit ``ndim``
    axes."""
    metadata: dict[str, Any] = {}
    if level.scale is not None and len(level.scale) == ndim:
        metadata["scale"] = level.scale
    if len(level.axes) == ndim and all(level.axes):
        metadata["axes"] = level.axes
        metadata["units"] = level.units
    return metadata


_OME_AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}


def ome_multiscales(shape: Sequence[int], metadata: dict[str, Any], name: str) -> dict[str, Any]:
    """OME-Zarr 0.5 ``ome`` attributes for one full-resolution level at path ``0``."""
    names = metadata.get("axes")
    axis_order = (
        "".join(names)
        if names and all(len(a) == 1 for a in names)
        else {2: "yx", 3: "zyx", 4: "tzyx", 5: "tczyx"}.get(len(shape))
    )
    if not 2 <= len(shape) <= 5 or not axis_order or len(axis_order) != len(shape):
        raise FormatError(
            f"OME-Zarr needs 2 to 5 axes named from t, c, z, y, x; got shape {tuple(shape)}"
            + (f" with axis order {axis_order!r}" if axis_order else "")
        )
    axis_order = axis_order.lower()
    canonical = "".join(a for a in "tczyx" if a in axis_order)
    if (
        sorted(axis_order) != sorted(canonical)
        or axis_order != canonical
        or not set("yx") <= set(axis_order)
    ):
        raise FormatError(
            f"OME-Zarr needs axes in the order t, c, z, y, x (ending with y, x); got {axis_order!r}"
        )
    # Unknown spacing is 1 in OME-Zarr, which has no way to say "unknown".
    scale = [1.0 if s is None else float(s) for s in metadata.get("scale") or [1.0] * len(shape)]
    units = metadata.get("units") or [None] * len(shape)
    axes = []
    for a, unit in zip(axis_order, units, strict=True):
        axis: dict[str, Any] = {"name": a, "type": _OME_AXIS_TYPES[a]}
        if unit is not None:
            axis["unit"] = unit
        axes.append(axis)
    return {
        "version": "0.5",
        "multiscales": [
            {
                "name": name,
                "axes": axes,
                "datasets": [
                    {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}
                ],
            }
        ],
    }
