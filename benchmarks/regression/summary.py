"""Print a pytest-benchmark JSON file as a markdown table: mean and minimum time per call,
calls per second and, where a benchmark records the bytes it reads or writes, MB/s of the mean.

    python benchmarks/regression/summary.py .benchmarks/Linux-CPython-3.11-64bit/0001_*.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _seconds(value: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-9:.3g} ns"


def table(result: dict) -> str:
    lines = [
        "| group | benchmark | mean | min | rounds | ops/s | MB/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for bench in result["benchmarks"]:
        stats = bench["stats"]
        nbytes = bench.get("extra_info", {}).get("nbytes")
        rate = f"{nbytes / stats['mean'] / 1e6:,.0f}" if nbytes else ""
        lines.append(
            f"| {bench['group'] or ''} | `{bench['name']}` | {_seconds(stats['mean'])} "
            f"| {_seconds(stats['min'])} | {stats['rounds']} | {stats['ops']:,.1f} | {rate} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path, help="written by --benchmark-json or --benchmark-save")
    args = parser.parse_args()
    result = json.loads(args.json.read_text())
    print(f"{result['datetime']}, commit {result['commit_info'].get('id', '?')[:10]}")
    print(table(result))


if __name__ == "__main__":
    main()
