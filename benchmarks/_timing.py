"""Repeated measurements: one untimed warm-up call, then ``repeat`` timed calls."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Stat", "measure", "measure_interleaved", "stat_of"]


@dataclass
class Stat:
    """Median and spread (min-max) of repeated samples, in ``unit`` (``s`` or ``MB``)."""

    samples: list[float]
    unit: str = "s"
    parts: dict[str, float] = field(default_factory=dict)  # medians of named sub-timings

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def low(self) -> float:
        return min(self.samples)

    @property
    def high(self) -> float:
        return max(self.samples)

    def as_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "samples": self.samples,
            "parts": self.parts,
        }


def stat_of(samples: list[float], unit: str = "s") -> Stat:
    if not samples:
        raise ValueError("no samples")
    return Stat([float(s) for s in samples], unit)


def measure(
    fn: Callable[[], Any],
    repeat: int,
    *,
    setup: Callable[[], Any] | None = None,
    warmup: bool = True,
) -> Stat:
    """Time ``fn()``: an untimed warm-up call (page cache, imports, lazy inits), then ``repeat``
    timed calls. ``setup()`` runs untimed before every call (e.g. removing a previous output)."""
    setups = None if setup is None else {"fn": setup}
    return measure_interleaved({"fn": fn}, repeat, setups=setups, warmup=warmup)["fn"]


def measure_interleaved(
    fns: dict[str, Callable[[], Any]],
    repeat: int,
    *,
    setups: dict[str, Callable[[], Any]] | None = None,
    warmup: bool = True,
) -> dict[str, Stat]:
    """Time several calls round-robin (each repeat runs every call once, in order), so that a
    change in the machine's load during the measurement affects all of them alike."""
    setups = setups or {}

    def timed(name: str) -> float:
        if name in setups:
            setups[name]()
        t0 = time.perf_counter()
        fns[name]()
        return time.perf_counter() - t0

    if warmup:
        for name in fns:
            timed(name)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name in fns:
            samples[name].append(timed(name))
    return {name: stat_of(values) for name, values in samples.items()}
