"""Physical metadata: axis names, spacing per axis with units, and the time step.

Written to ``stack_metadata.json`` under three keys that the original package (and every other
reader of the format) ignores::

    "axes": ["t", "z", "y", "x"],
    "scale": [0.5, 7.0, 0.6, 0.6],
    "units": ["second", "micrometer", "micrometer", "micrometer"]

``scale`` is the distance between neighbouring elements along each axis, in that axis' unit
(``null`` when unknown). The time step (1 / volume rate) is the scale of the axis named ``t``,
whose unit is then a time unit (``"second"`` when written with ``time_step=``). The legacy keys
are kept in step for old readers: ``resolution`` holds the scale, ``axis_order`` the names.

Reading accepts every variant, the later overriding the earlier:

1. defaults: ``tzyx`` for 4-D data (else the last axes of ``tczyx``), spacing 1, no units;
2. ``axis_order`` (the original's; ignored when it does not fit, e.g. its ``"zyx"`` for 2-D data);
3. ``resolution`` (aligned with the last axes when shorter, e.g. 3 values for 4-D data; no unit);
4. sashimi's ``voxel_size`` (inter-plane, y, x spacing in micrometres: the last axes);
5. the new keys ``axes``, ``scale``, ``units``.

Legacy keys that cannot be meant for this array (too long, zero or negative spacing) are ignored;
the new keys, which only this package writes, must be exact or the metadata is an error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from splitds_dask._errors import MetadataError
from splitds_dask._format.metadata import default_axis_order

__all__ = [
    "PhysicalMetadata",
    "add_physical_metadata",
    "default_axes",
    "physical_metadata_kwargs",
    "read_physical_metadata",
    "resolve_physical_metadata",
]

# Seconds per time unit, for ``time_step`` (names as pint/OME-NGFF spell them, and short forms).
_SECONDS = {
    "second": 1.0,
    "seconds": 1.0,
    "s": 1.0,
    "millisecond": 1e-3,
    "milliseconds": 1e-3,
    "ms": 1e-3,
    "microsecond": 1e-6,
    "microseconds": 1e-6,
    "us": 1e-6,
    "µs": 1e-6,
    "minute": 60.0,
    "minutes": 60.0,
    "min": 60.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "h": 3600.0,
}
_TIME_AXIS = "t"
_VOXEL_SIZE_UNIT = "micrometer"  # sashimi's voxel_size (state.py get_voxel_size)


@dataclass(frozen=True)
class PhysicalMetadata:
    """Axis names, spacing and units of a dataset, one entry per axis.

    Attributes
    ----------
    axes : tuple of str
        Axis names, e.g. ``("t", "z", "y", "x")``.
    scale : tuple of float
        Distance between neighbouring elements along each axis, in that axis' unit.
    units : tuple of (str or None)
        Unit of each axis (``"micrometer"``, ``"second"``...), None when unknown.
    """

    axes: tuple[str, ...]
    scale: tuple[float, ...]
    units: tuple[str | None, ...]

    @property
    def time_step(self) -> float | None:
        """Seconds between elements along the ``t`` axis, if it has a time unit; else None."""
        if _TIME_AXIS not in self.axes:
            return None
        axis = self.axes.index(_TIME_AXIS)
        factor = _SECONDS.get(self.units[axis] or "")
        return None if factor is None else self.scale[axis] * factor


def default_axes(ndim: int) -> tuple[str, ...]:
    """Axis names of data whose metadata names none (``t z y x`` for 4-D, as the original)."""
    return tuple(default_axis_order(ndim)) if ndim <= 5 else tuple(f"d{i}" for i in range(ndim))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _spacing(value: Any) -> list[float] | None:
    """A list of finite positive numbers as floats, else None."""
    if not isinstance(value, (list, tuple)) or not all(_is_number(v) for v in value):
        return None
    out = [float(v) for v in value]
    return out if all(math.isfinite(v) and v > 0 for v in out) else None


def _trailing(values: list, ndim: int) -> list | None:
    """``values`` aligned with the last axes of an ``ndim``-d array (None if it cannot be)."""
    return None if len(values) > ndim else [None] * (ndim - len(values)) + values


def _check_axes(value: Any, ndim: int) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"axes must be a sequence of {ndim} names, got {value!r}")
    if len(value) != ndim or not all(isinstance(a, str) and a for a in value):
        raise ValueError(f"axes must be {ndim} non-empty names, got {value!r}")
    if len(set(value)) != ndim:
        raise ValueError(f"axes must be distinct, got {value!r}")
    return tuple(value)


def _check_scale(value: Any, ndim: int) -> tuple[float, ...]:
    spacing = _spacing(value)
    if spacing is None or len(spacing) != ndim:
        raise ValueError(f"scale must be {ndim} finite positive numbers, got {value!r}")
    return tuple(spacing)


def _check_partial_scale(value: Any, ndim: int) -> list[float | None]:
    """A writer's ``scale``: like :func:`_check_scale`, but None marks an unknown spacing."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"scale must be a sequence of {ndim} numbers or None, got {value!r}")
    known = [v for v in value if v is not None]
    if len(value) != ndim or _spacing(known) is None:
        raise ValueError(f"scale must be {ndim} finite positive numbers or None, got {value!r}")
    return [None if v is None else float(v) for v in value]


def _legacy_resolution(value: Any, ndim: int) -> list[float | None]:
    """A writer's ``resolution``, aligned with the last axes (None before them).

    It may be shorter than the number of axes: the original package reports ``(1, 1, 1)`` for
    4-D data without the key, and programs pass that on to the datasets they write.
    """
    spacing = _spacing(value)
    aligned = None if spacing is None else _trailing(spacing, ndim)
    if aligned is None:
        raise ValueError(
            f"resolution must be at most {ndim} finite positive numbers, got {value!r}"
        )
    return aligned


def _check_units(value: Any, ndim: int) -> tuple[str | None, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise TypeError(f"units must be a sequence of {ndim} unit names or None, got {value!r}")
    if len(value) != ndim:
        raise ValueError(f"units must be a sequence of {ndim} unit names or None, got {value!r}")
    if not all(u is None or (isinstance(u, str) and u) for u in value):
        raise ValueError(f"units must be non-empty strings or None, got {value!r}")
    return tuple(value)


def read_physical_metadata(
    raw: Mapping[str, Any], ndim: int, *, source: object = "<metadata>"
) -> PhysicalMetadata:
    """The physical metadata a metadata mapping declares, from any variant (module docstring).

    Raises
    ------
    MetadataError
        If the ``axes``, ``scale`` or ``units`` key is malformed (naming ``source``).
    """
    axes = default_axes(ndim)
    order = raw.get("axis_order")
    if isinstance(order, str) and len(order) == ndim and len(set(order)) == ndim:
        axes = tuple(order)
    scale: list[float] = [1.0] * ndim
    units: list[str | None] = [None] * ndim
    resolution = _spacing(raw.get("resolution"))
    aligned = _trailing(resolution, ndim) if resolution is not None else None
    if aligned is not None:
        scale = [s if r is None else r for s, r in zip(scale, aligned, strict=True)]
    voxel_size = _spacing(raw.get("voxel_size"))
    aligned = _trailing(voxel_size, ndim) if voxel_size is not None else None
    if aligned is not None:
        for axis, value in enumerate(aligned):
            if value is not None:
                scale[axis], units[axis] = value, _VOXEL_SIZE_UNIT
    try:
        if "axes" in raw:
            if isinstance(raw["axes"], str):
                raise ValueError(f"axes must be a list of names, got {raw['axes']!r}")
            axes = _check_axes(raw["axes"], ndim)
        if "scale" in raw:
            scale = list(_check_scale(raw["scale"], ndim))
        if "units" in raw:
            units = list(_check_units(raw["units"], ndim))
    except (TypeError, ValueError) as exc:
        raise MetadataError(f"{source}: {exc}") from None
    return PhysicalMetadata(axes=axes, scale=tuple(scale), units=tuple(units))


def resolve_physical_metadata(
    ndim: int,
    *,
    axes: Sequence[str] | None = None,
    scale: Sequence[float | None] | None = None,
    units: Sequence[str | None] | None = None,
    time_step: float | None = None,
    resolution: Sequence[float] | None = None,
    axis_order: str | None = None,
) -> PhysicalMetadata:
    """The physical metadata a writer was asked for, checked; unset entries take defaults.

    ``axes`` is a sequence of names, or a string of one letter per axis (``"tzyx"``).

    ``scale`` may hold None for a spacing that is not known (written as 1). ``resolution`` and
    ``axis_order`` (the original's keys) stand in for ``scale`` and ``axes`` when those are not
    given, and must agree with them when they are; a shorter ``resolution`` gives the spacing
    of the last axes (as the reader takes it). ``time_step`` sets the scale of the ``t``
    axis, in seconds, and its unit to ``"second"``.

    Raises
    ------
    TypeError, ValueError
        An option is malformed or two options disagree.
    """
    if isinstance(axes, str):
        axes = tuple(axes)  # "tzyx": one letter per axis
    if axes is not None:
        axes_t = _check_axes(axes, ndim)
        if axis_order is not None and axis_order != "".join(axes_t):
            raise ValueError(f"axis_order {axis_order!r} disagrees with axes {axes_t}")
    elif axis_order is not None:
        axes_t = _check_axes(tuple(axis_order), ndim)
    else:
        axes_t = default_axes(ndim)
    scale_l: list[float | None] = [None] * ndim
    if scale is not None:
        scale_l = _check_partial_scale(scale, ndim)
    if resolution is not None:
        legacy = _legacy_resolution(resolution, ndim)
        if any(
            s is not None and r is not None and s != r for s, r in zip(scale_l, legacy, strict=True)
        ):
            raise ValueError(
                f"resolution {tuple(resolution)} disagrees with scale {tuple(scale or ())}"
            )
        scale_l = [s if r is None else r for s, r in zip(scale_l, legacy, strict=True)]
    units_l: list[str | None] = (
        list(_check_units(units, ndim)) if units is not None else [None] * ndim
    )
    if time_step is not None:
        if _TIME_AXIS not in axes_t:
            raise ValueError(f"time_step needs an axis named {_TIME_AXIS!r}; axes are {axes_t}")
        (step,) = _check_scale([time_step], 1)
        axis = axes_t.index(_TIME_AXIS)
        if scale_l[axis] is not None and scale_l[axis] != step:
            raise ValueError(f"time_step {time_step} disagrees with the t scale {scale_l[axis]}")
        if units_l[axis] not in (None, "second"):
            raise ValueError(f"time_step is in seconds; the t unit is {units_l[axis]!r}")
        scale_l[axis], units_l[axis] = step, "second"
    return PhysicalMetadata(
        axes=axes_t, scale=tuple(1.0 if s is None else s for s in scale_l), units=tuple(units_l)
    )


def add_physical_metadata(metadata: dict[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """Add the physical keys to a metadata dict in the original's layout (in place).

    ``options`` are keyword arguments of :func:`resolve_physical_metadata`. Without ``axes``,
    ``scale``, ``units`` and ``time_step`` the dict is left as it is, so the file stays
    byte-for-byte what the original package writes. Otherwise ``axes``, ``scale`` and ``units``
    are added in full, and ``resolution``/``axis_order`` are set to agree with them
    (``axis_order`` is dropped when a name is longer than one character).
    """
    if all(options.get(name) is None for name in ("axes", "scale", "units", "time_step")):
        return metadata
    physical = resolve_physical_metadata(len(metadata["shape_full"]), **options)
    metadata["resolution"] = list(physical.scale)
    if all(len(name) == 1 for name in physical.axes):
        metadata["axis_order"] = "".join(physical.axes)
    else:
        metadata.pop("axis_order", None)
    metadata["axes"] = list(physical.axes)
    metadata["scale"] = list(physical.scale)
    metadata["units"] = list(physical.units)
    return metadata


def writer_physical_options(data: Any, ndim: int, **options: Any) -> dict[str, Any]:
    """A writer's physical options, checked before anything is written.

    ``options`` are keyword arguments of :func:`resolve_physical_metadata`, None when not
    given. When none is given and ``data`` has physical metadata of its own (a
    :class:`SplitDataset`) that says more than the defaults, that is carried through; a dataset
    that records nothing is written with the original's keys only.

    Raises
    ------
    TypeError, ValueError
        An option is malformed or two options disagree.
    """
    if all(v is None for v in options.values()) and all(
        hasattr(data, name) for name in ("axes", "scale", "units")
    ):
        own = physical_metadata_kwargs(data)
        if PhysicalMetadata(**own) != resolve_physical_metadata(ndim):
            options.update(own)
    resolve_physical_metadata(ndim, **options)
    return options


def physical_metadata_kwargs(dataset: Any) -> dict[str, Any]:
    """Writer keyword arguments that carry ``dataset``'s physical metadata to a new dataset.

    Parameters
    ----------
    dataset : SplitDataset
        Or anything with ``axes``, ``scale`` and ``units`` attributes.

    Returns
    -------
    dict
        ``{"axes": ..., "scale": ..., "units": ...}``, for :func:`to_split_dataset`,
        :func:`save_to_split_dataset` and :class:`EmptySplitDataset` (the time step is the scale
        of the ``t`` axis, so it is carried too).

    Examples
    --------
    >>> from splitds_dask import SplitDataset, physical_metadata_kwargs, to_split_dataset
    >>> ds = SplitDataset("experiment/original")
    >>> plus_one = to_split_dataset(ds.to_dask() + 1, "plus_one", **physical_metadata_kwargs(ds))
    >>> plus_one.axes, plus_one.scale
    (('t', 'z', 'y', 'x'), (0.5, 2.0, 0.6, 0.6))
    """
    return {
        "axes": tuple(dataset.axes),
        "scale": tuple(float(s) for s in dataset.scale),
        "units": tuple(dataset.units),
    }
