"""The peer report: splitds_dask against its peers, on the same files, in one run.

Usage (from the repository root)::

    python benchmarks/run.py [--quick] [--only read,mean,...] [--repeat 5]
                             [--data-dir DIR] [--json out.json] [--cluster-blocks 1000,5000]

See benchmarks/README.md for the workloads, the peers and how to read the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _data
from _machine import describe, format_machine
from _timing import Stat
from _workloads import H5PY, OLD, OTHER, WORKLOADS, ZARR, Context, Row, ceiling

PEER_COLUMNS = (OLD, H5PY, ZARR, OTHER)


def fmt_value(x: float, unit: str) -> str:
    if unit == "s":
        if x >= 1:
            return f"{x:.2f} s"
        if x >= 1e-3:
            return f"{x * 1e3:.3g} ms"
        return f"{x * 1e6:.3g} µs"
    if unit == "MB":
        return f"{x:.0f} MB"
    return f"{x:.3g}{unit}"


def fmt_bytes(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.2f} MB"


def fmt_stat(s: Stat) -> str:
    med = fmt_value(s.median, s.unit)
    if len(s.samples) == 1:
        return med
    return f"{med} [{fmt_value(s.low, s.unit)}-{fmt_value(s.high, s.unit)}]"


def table(rows: list[Row], ceiling_rate: float) -> str:
    head = [
        "#",
        "workload",
        "ours: median [min-max]",
        *PEER_COLUMNS,
        "ratio peer/ours",
        "ours MB/s",
        "% ceiling",
        "target",
        "result",
        "notes",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        peers = []
        for p in PEER_COLUMNS:
            if p not in r.peers:
                peers.append("")
            else:
                label = f"{r.other_label}: " if p == OTHER else ""
                peers.append(label + fmt_stat(r.peers[p]))
        ratios = "; ".join(
            f"{r.other_label if p == OTHER else p} {r.ratio(p):.2f}x" for p in r.peers
        )
        if r.nbytes and r.ours.unit == "s":
            rate = r.nbytes / r.ours.median / 1e6
            mbs, frac = f"{rate:,.0f}", f"{100 * rate * 1e6 / ceiling_rate:.0f} %"
        else:
            mbs = frac = ""
        result = "" if r.passed is None else ("PASS" if r.passed else "FAIL")
        cells = [r.id, r.workload, fmt_stat(r.ours), *peers, ratios, mbs, frac, r.target]
        cells += [result, r.notes]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny datasets (a smoke run)")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated workloads to run, of: {', '.join(WORKLOADS)} (default: all)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="timed repeats per measurement")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the datasets are generated (reused while their spec matches); "
        "default: a temporary folder, removed afterwards",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write all samples here")
    parser.add_argument(
        "--cluster-blocks",
        default="",
        help="comma-separated block counts of the cluster rows (default: 1000,5000,20000,50000; "
        "with --quick: 200,500)",
    )
    args = parser.parse_args(argv)
    only = [w.strip() for w in args.only.split(",") if w.strip()] or list(WORKLOADS)
    unknown = set(only) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workload(s) {sorted(unknown)}; choose from {list(WORKLOADS)}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f} s] {msg}", file=sys.stderr, flush=True)

    start = time.perf_counter()
    cfg = _data.QUICK if args.quick else _data.FULL
    if args.cluster_blocks:
        try:
            counts = tuple(sorted({int(n) for n in args.cluster_blocks.split(",") if n.strip()}))
        except ValueError:
            parser.error(f"--cluster-blocks: not integers: {args.cluster_blocks!r}")
        if not counts or counts[0] < 1:
            parser.error("--cluster-blocks: give positive block counts")
        cfg = dataclasses.replace(cfg, cluster_counts=counts)
    tmp = None
    if args.data_dir is None:
        tmp = tempfile.mkdtemp(prefix="splitds-bench-")
        data_dir = Path(tmp)
    else:
        data_dir = args.data_dir.resolve()
    try:
        machine = describe()
        data = _data.prepare(data_dir, cfg, log=log)
        log("warming the page cache (reading every movie and zarr file once) ...")
        _data.warm_page_cache([data.movie, data.zarr])
        ctx = Context(data=data, repeat=args.repeat)
        log("ceiling: numpy copies ...")
        rows = ceiling(ctx)
        for name in only:
            log(f"workload {name} ...")
            rows += WORKLOADS[name](ctx)
        machine["load average at end"] = os.getloadavg()
        wall = time.perf_counter() - start
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    ceiling_rate = data.raw_bytes / ctx.ceiling["alloc"].median
    cfg_line = (
        f"movie {' x '.join(map(str, cfg.movie_shape))} uint16 = {fmt_bytes(data.raw_bytes)} "
        f"in {math.ceil(cfg.movie_shape[0] / cfg.block_frames)} blocks of "
        f"{fmt_bytes(cfg.block_bytes)}; on disk {fmt_bytes(data.compressed_bytes)} "
        f"(compression ratio {data.raw_bytes / data.compressed_bytes:.2f}); "
        f"repeats {args.repeat} (+1 untimed warm-up each); run took {wall:.0f} s"
    )
    print("## Machine\n")
    print(format_machine(machine))
    print(f"\n## Results ({'quick' if args.quick else 'full'})\n")
    print(f"- {cfg_line}")
    print(
        f"- ceiling (100 % in '% ceiling') = `src.copy()` of the movie: "
        f"{ceiling_rate / 1e6:,.0f} MB/s; `np.copyto` into a preallocated buffer: "
        f"{data.raw_bytes / ctx.ceiling['copyto'].median / 1e6:,.0f} MB/s\n"
    )
    print(table(rows, ceiling_rate))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine,
                    "config": cfg_line,
                    "quick": args.quick,
                    "repeat": args.repeat,
                    "wall_seconds": wall,
                    "ceiling_mb_s": ceiling_rate / 1e6,
                    "rows": [r.as_json() for r in rows],
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
