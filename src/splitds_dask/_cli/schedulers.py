"""Where the commands compute: the ``--scheduler`` choice, and progress shown on a terminal.

``sync``, ``threads``, ``processes``, ``local`` (:func:`~splitds_dask.local_cluster`) or the
address of a running dask scheduler. Progress goes to stderr (stdout is for results), and only
when stderr is a terminal: :class:`Runner` draws a bar for each computation (on dask's local
schedulers and on a cluster alike) on a :class:`ProgressLine`, which any command can also use
for progress of its own (``written 3 of 8 slabs``).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

__all__ = [
    "SCHEDULERS",
    "ProgressLine",
    "Runner",
    "bar_text",
    "format_elapsed",
    "scheduler_arg",
    "show_progress",
    "use_scheduler",
]

SCHEDULERS = ("sync", "threads", "processes", "local")
_ADDRESS = re.compile(r"^([a-z0-9+]+://)?[\w.\-\[\]:]+:\d+$", re.IGNORECASE)


def scheduler_arg(text: str) -> str:
    """The ``--scheduler`` argument type: a scheduler's name or a dask scheduler's address."""
    if text in SCHEDULERS or ("://" in text and len(text) > 6) or _ADDRESS.match(text):
        return text
    raise argparse.ArgumentTypeError(
        f"invalid scheduler {text!r}: expected sync, threads, processes, local, or a dask "
        "scheduler's address such as tcp://10.0.0.5:8786"
    )


@contextlib.contextmanager
def use_scheduler(spec: str) -> Iterator[Any]:
    """Run the dask computations of the block on ``spec``; yields the distributed Client, if any."""
    import dask

    if spec in ("sync", "threads", "processes"):
        with dask.config.set(scheduler=spec):
            yield None
        return
    from splitds_dask._integrations.cluster import _import_distributed, connect, local_cluster

    distributed = _import_distributed()
    if spec == "local":
        with (
            local_cluster(dashboard_address=":0", silence_logs=40) as cluster,
            distributed.Client(cluster) as client,
        ):
            yield client
    else:
        with connect(spec, timeout="10s") as client:
            yield client


def show_progress(args: argparse.Namespace) -> bool:
    """Whether to draw progress: not asked away with ``--no-progress``, and stderr a terminal."""
    return not getattr(args, "no_progress", False) and sys.stderr.isatty()


class ProgressLine:
    """One line of progress on a terminal, redrawn in place.

    A carriage return only moves the cursor back: each text is padded with spaces over the
    longer one before it, so that no characters of an earlier text are left on the line. Safe to
    call from several threads (a timer thread redraws while tasks finish).

    Parameters
    ----------
    stream : text stream, optional
        Where to draw (default: ``sys.stderr`` at the time of drawing).
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._width = 0  # of the text on the line, 0 when the line is ended
        self._lock = threading.Lock()

    def show(self, text: str) -> None:
        """Replace the line's text with ``text`` (one line, no line break).

        Cut to the terminal's width: a text that wrapped would leave its first part above.
        """
        stream = self._stream or sys.stderr
        text = text[: max(shutil.get_terminal_size().columns - 1, 20)]
        with self._lock, contextlib.suppress(ValueError):  # a stream closed under us
            stream.write("\r" + text + " " * max(0, self._width - len(text)))
            stream.flush()
            self._width = max(len(text), 1)

    def end(self) -> None:
        """End the line (a line break) if anything was drawn, so the next text starts below."""
        stream = self._stream or sys.stderr
        with self._lock, contextlib.suppress(ValueError):
            if self._width:
                stream.write("\n")
                stream.flush()
            self._width = 0


def format_elapsed(seconds: float) -> str:
    """``6.8 s``, ``2 min 05 s``, ``1 h 02 min``: the time a computation has taken so far."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


_BAR_WIDTH = 30


def bar_text(done: int, total: int, elapsed: float) -> str:
    """``[###   ]  50% Completed | 5/10 tasks | 6.8 s``: the text of a progress bar."""
    frac = done / total if total else 1.0
    bar = "#" * int(_BAR_WIDTH * frac)
    return (
        f"[{bar:<{_BAR_WIDTH}}] {int(100 * frac):3d}% Completed | {done}/{total} tasks | "
        f"{format_elapsed(elapsed)}"
    )


class _LocalBar:
    """A progress bar for dask's local schedulers (a dask callback), drawn on a ProgressLine.

    A timer thread redraws every ``interval`` seconds, so the elapsed time moves on while a
    long task runs; the last draw, when the computation ends, shows where it stopped.
    """

    def __init__(self, line: ProgressLine, interval: float = 0.1) -> None:
        from dask.callbacks import Callback

        self._line = line
        self._interval = interval
        self._state: dict[str, Any] | None = None
        self._start_time = 0.0
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        self.callback = Callback(start=self._start, pretask=self._pretask, finish=self._finish)

    def _start(self, dsk: Any) -> None:
        self._state = None
        self._start_time = time.monotonic()
        self._stop.clear()
        self._timer = threading.Thread(target=self._tick, daemon=True)
        self._timer.start()

    def _pretask(self, key: Any, dsk: Any, state: dict[str, Any]) -> None:
        self._state = state

    def _counts(self) -> tuple[int, int]:
        state = self._state
        if not state:
            return 0, 0
        done = len(state["finished"])
        return done, done + sum(len(state[k]) for k in ("ready", "waiting", "running"))

    def _draw(self, done: int, total: int) -> None:
        self._line.show(bar_text(done, total, time.monotonic() - self._start_time))

    def _tick(self) -> None:
        while not self._stop.wait(self._interval):
            self._draw(*self._counts())

    def _finish(self, dsk: Any, state: dict[str, Any], errored: bool) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.join()
        self._state = state
        done, total = self._counts()
        self._draw(total if not errored else done, total)
        self._line.end()


def _cluster_bar(client: Any, futures: list[Any], line: ProgressLine) -> None:
    """Draw the progress of ``futures`` on ``client``'s cluster until they are done."""
    from distributed.diagnostics.progressbar import TextProgressBar

    class _Bar(TextProgressBar):
        # distributed's own bar writes on stdout, which is for results here, and leaves the
        # tail of a longer text on the line; only the drawing is ours.
        def _draw_bar(self, remaining: int, all: int, **kwargs: Any) -> None:
            line.show(bar_text(all - remaining, all, self.elapsed))

        def _draw_stop(self, **kwargs: Any) -> None:
            line.end()

    _Bar(futures, scheduler=client.scheduler.address, complete=True)


class Runner:
    """Computes dask collections on the chosen scheduler, with progress drawn on a terminal.

    Parameters
    ----------
    client : distributed.Client or None
        From :func:`use_scheduler`; None for dask's local schedulers.
    progress : bool
        Draw progress (see :func:`show_progress`) on ``line``.
    line : ProgressLine, optional
        Where progress is drawn (default: a line on ``sys.stderr``).
    """

    def __init__(self, client: Any, progress: bool, line: ProgressLine | None = None) -> None:
        self.client = client
        self.progress = progress
        self.line = line if line is not None else ProgressLine()

    def compute(self, *collections: Any) -> tuple[Any, ...]:
        """``dask.compute(*collections)`` on the client, if any, with a progress bar if shown."""
        import dask

        if self.client is not None:
            from distributed import futures_of

            futures = self.client.compute(list(collections))
            if self.progress:
                _cluster_bar(self.client, futures_of(futures), self.line)
            return tuple(self.client.gather(futures))
        if self.progress:
            with _LocalBar(self.line).callback:
                return tuple(dask.compute(*collections))
        return tuple(dask.compute(*collections))

    def quiet(self, *collections: Any) -> tuple[Any, ...]:
        """:meth:`compute` without a progress bar (for slabs, counted by :meth:`on_slab`)."""
        return Runner(self.client, False, self.line).compute(*collections)

    def on_slab(self, done: int, total: int) -> None:
        """One progress line for a file written slab by slab."""
        if self.progress:
            self.line.show(f"written {done} of {total} slabs")
            if done == total:
                self.line.end()
