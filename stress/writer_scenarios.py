"""Frames lost when writers meet: a count for each scenario, run against any checkout.

Each scenario starts real writer processes on one folder and counts the frames a writer accepted
(``append`` returned, ``close`` raised nothing) or a dataset held, that the folder no longer holds
afterwards. Run it with the package to measure on the path (``PYTHONPATH=src``):

    PYTHONPATH=src python stress/writer_scenarios.py
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import warnings
from pathlib import Path

import numpy as np

import splitds_dask as sd

FRAME = (6, 8)

# Opens a SplitDatasetWriter, appends `first` frames (flushed), reports, waits for a line on
# stdin, appends `rest` more, closes and reports how many frames it had accepted.
_WRITER = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    import splitds_dask as sd

    folder, first, rest, seed, mode, block = sys.argv[1:7]
    first, rest, seed, block = int(first), int(rest), int(seed), int(block)
    def frames(a, b):
        index = np.arange(a, b, dtype=np.uint16)[:, None, None] + np.uint16(seed * 1000)
        return np.broadcast_to(index, (b - a, 6, 8)).copy()
    accepted = 0
    try:
        w = sd.SplitDatasetWriter(folder, frame_shape=(6, 8), dtype="uint16", block_length=block,
                                  overwrite=mode == "overwrite", append=mode == "append")
    except Exception as exc:
        print(json.dumps({"refused": type(exc).__name__}), flush=True)
        sys.exit(0)
    for f in frames(0, first):
        w.append(f)
        accepted += 1
    w.flush()
    print(json.dumps({"opened": True}), flush=True)
    sys.stdin.readline()
    try:
        for f in frames(first, first + rest):
            w.append(f)
            accepted += 1
            time.sleep(0.002)
        w.close()
        print(json.dumps({"accepted": accepted}), flush=True)
    except Exception as exc:
        print(json.dumps({"accepted": accepted, "error": type(exc).__name__}), flush=True)
    """
)


# Appends `sessions` times `per_session` frames, each session a new writer (append=True),
# retrying while another writer holds the folder; reports the frames append() accepted and the
# sessions that raised.
_SESSIONS = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import splitds_dask as sd

    folder, seed, sessions, per_session = sys.argv[1], *map(int, sys.argv[2:5])
    accepted = errors = 0
    done = 0
    while done < sessions:
        try:
            w = sd.SplitDatasetWriter(folder, append=True)
        except BlockingIOError:
            continue
        except Exception:
            errors += 1
            continue
        try:
            for i in range(per_session):
                index = np.uint16(seed * 1000 + done * per_session + i)
                w.append(np.full((6, 8), index, np.uint16))
                accepted += 1  # append returned: the caller counts on this frame
            w.close()
        except Exception:
            errors += 1
        done += 1
    print(json.dumps({"accepted": accepted, "errors": errors}), flush=True)
    """
)


def _env() -> dict[str, str]:
    return dict(os.environ)


def _start(folder: Path, first: int, rest: int, seed: int, mode: str, block: int = 4):
    args = [str(folder), str(first), str(rest), str(seed), mode, str(block)]
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )


def _line(proc) -> dict:
    return json.loads(proc.stdout.readline())


def _finish(proc) -> dict:
    out, _ = proc.communicate("go\n", timeout=300)
    return json.loads(out.splitlines()[-1]) if out.strip() else {}


def _held(folder: Path, seed: int) -> int:
    """How many frames of writer ``seed`` the folder holds (0 if it does not open)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = np.asarray(sd.SplitDataset(folder)[...])
    except Exception:  # noqa: BLE001 - counted as holding nothing
        return 0
    values = data.reshape(len(data), -1)[:, 0].astype(int) - seed * 1000
    return int(np.sum((values >= 0) & (values < 1000)))


def overwrite_during_stream(tmp: Path, how: str) -> str:
    folder = tmp / f"live-{how}"
    writer = _start(folder, 10, 10, 1, "new")
    _line(writer)
    if how == "to_split_dataset":
        try:
            sd.to_split_dataset(np.zeros((4, *FRAME), np.uint16), folder, 2, overwrite=True)
            outcome = "replaced"
        except Exception as exc:  # noqa: BLE001
            outcome = f"refused ({type(exc).__name__})"
    else:
        sd.to_split_dataset(np.zeros((4, *FRAME), np.uint16), tmp / "other", 2)
        run = subprocess.run(
            [sys.executable, "-m", "splitds_dask._cli", "convert", str(tmp / "other"),
             str(folder), "--overwrite", "--no-progress"],
            capture_output=True, text=True, env=_env(), check=False,
        )  # fmt: skip
        outcome = "replaced" if run.returncode == 0 else f"refused ({run.stderr.strip()[:60]}...)"
    done = _finish(writer)
    lost = done.get("accepted", 0) - _held(folder, 1)
    return f"{how} --overwrite during a live writer: {outcome}; writer accepted {done}; lost {lost}"


def two_writers(tmp: Path) -> str:
    folder = tmp / "two"
    sd.to_split_dataset(np.full((4, *FRAME), 9000, np.uint16), folder, 4)  # seed 9: 4 frames
    a = _start(folder, 3, 24, 1, "append")
    b = _start(folder, 3, 24, 2, "append")
    ra, rb = _line(a), _line(b)
    da, db = _finish(a), _finish(b)
    accepted = da.get("accepted", 0) + db.get("accepted", 0) + 4
    held = _held(folder, 1) + _held(folder, 2) + _held(folder, 9)
    return (
        f"two append writers started together: {ra} {rb}; accepted {accepted} frames (incl. 4 "
        f"old), the folder holds {held}; lost {accepted - held}"
    )


def racing_sessions(tmp: Path, n_processes: int = 4, sessions: int = 12, per: int = 2) -> str:
    folder = tmp / "sessions"
    sd.to_split_dataset(np.full((3, *FRAME), 9000, np.uint16), folder, 3)  # seed 9: 3 frames
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _SESSIONS, str(folder), str(seed), str(sessions), str(per)],
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for seed in range(1, n_processes + 1)
    ]
    reports = [json.loads(p.communicate(timeout=600)[0]) for p in procs]
    accepted = sum(r["accepted"] for r in reports) + 3
    held = sum(_held(folder, seed) for seed in range(1, n_processes + 1)) + _held(folder, 9)
    return (
        f"{n_processes} processes x {sessions} append sessions x {per} frames racing for one "
        f"folder: {reports}; accepted {accepted} (incl. 3 old), the folder holds {held}; "
        f"lost {accepted - held}"
    )


def killed_replacement(tmp: Path) -> str:
    folder = tmp / "killed"
    sd.to_split_dataset(np.full((10, *FRAME), 9000, np.uint16), folder, 5)
    writer = _start(folder, 3, 0, 1, "overwrite", block=8)  # 3 frames, no complete block
    _line(writer)
    writer.send_signal(signal.SIGKILL)
    writer.communicate(timeout=300)
    held = _held(folder, 9)
    return f"overwrite=True writer killed before its first block: old dataset lost {10 - held}/10"


def symlink_overwrite(tmp: Path) -> str:
    real = tmp / "real"
    sd.to_split_dataset(np.full((10, *FRAME), 9000, np.uint16), real, 5)
    out = []
    for how in ("to_split_dataset", "SplitDatasetWriter"):
        link = tmp / f"link-{how}"
        link.symlink_to(real)
        try:
            if how == "to_split_dataset":
                sd.to_split_dataset(np.zeros((4, *FRAME), np.uint16), link, 2, overwrite=True)
            else:
                sd.SplitDatasetWriter(
                    link, frame_shape=FRAME, dtype="uint16", block_length=2, overwrite=True
                ).close()
            outcome = "no error"
        except Exception as exc:  # noqa: BLE001
            outcome = f"{type(exc).__name__}: {str(exc)[:70]}"
        hidden = [p.name for p in tmp.iterdir() if p.name.startswith(f".link-{how}")]
        out.append(
            f"{how}(symlink, overwrite=True): {outcome}; link still a link: {link.is_symlink()}; "
            f"hidden leftovers: {hidden}; old frames readable via the real path: {_held(real, 9)}"
        )
    return "\n".join(out)


def main() -> None:
    print("package:", Path(sd.__file__).parent)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        print(overwrite_during_stream(tmp, "to_split_dataset"))
        print(overwrite_during_stream(tmp, "convert"))
        print(two_writers(tmp))
        print(racing_sessions(tmp))
        print(killed_replacement(tmp))
        print(symlink_overwrite(tmp))


if __name__ == "__main__":
    main()
