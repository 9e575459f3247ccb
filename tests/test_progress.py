"""Progress drawn by the commands on a terminal: one line redrawn in place, with nothing left of
a longer text under a shorter one. What is written is rendered as a terminal shows it."""

from __future__ import annotations

import io
import re
import sys
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest

import splitds_dask as sd
from splitds_dask._cli.main import main
from splitds_dask._cli.schedulers import ProgressLine, Runner, bar_text, format_elapsed

_BAR = re.compile(r"\[#* *\] +\d+% Completed \| \d+/\d+ tasks \| [\d.]+ s")
_SLABS = re.compile(r"written \d+ of \d+ slabs")


def render(written: str) -> list[str]:
    """The lines a terminal shows for ``written``: a carriage return moves back to the start
    of the line without clearing it (later characters overwrite earlier ones one by one), a
    line feed starts a new line."""
    lines: list[list[str]] = [[]]
    column = 0
    for char in written:
        if char == "\r":
            column = 0
        elif char == "\n":
            lines.append([])
            column = 0
        else:
            line = lines[-1]
            if column < len(line):
                line[column] = char
            else:
                line.append(char)
            column += 1
    return ["".join(line) for line in lines]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_renderer_shows_what_a_carriage_return_leaves() -> None:
    # What the users saw: a bar text ending "| 16.79 s", then a shorter one drawn over it.
    assert render("\r| 16.79 s\r| 6.79 s") == ["| 6.79 ss"]
    assert render("a\nbc\rd\n") == ["a", "dc", ""]


@pytest.mark.parametrize(
    "texts",
    [
        ["[####] 50% | 123.46 s", "[####] 50% | 6.79 s"],
        ["written 10 of 10 slabs", "written 9 of 10 slabs", "x"],
        ["short", "a longer text", "mid length"],
    ],
)
def test_a_shorter_text_leaves_nothing_of_a_longer_one(texts: list[str]) -> None:
    stream = io.StringIO()
    line = ProgressLine(stream)
    for text in texts:
        line.show(text)
        assert render(stream.getvalue())[-1].rstrip() == text
    line.end()
    line.show("next")  # after end(): a line of its own
    assert [s.rstrip() for s in render(stream.getvalue())] == [texts[-1], "next"]


def test_a_text_wider_than_the_terminal_is_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    # A wrapped text would leave its first part on the line above, under no carriage return.
    monkeypatch.setenv("COLUMNS", "40")
    stream = io.StringIO()
    ProgressLine(stream).show("x" * 100)
    assert render(stream.getvalue()) == ["x" * 39]


def test_end_without_a_text_writes_nothing() -> None:
    stream = io.StringIO()
    ProgressLine(stream).end()
    assert stream.getvalue() == ""


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.04, "0.0 s"),
        (6.79, "6.8 s"),
        (59.94, "59.9 s"),
        (125, "2 min 05 s"),
        (3725, "1 h 02 min"),
    ],
)
def test_format_elapsed(seconds: float, text: str) -> None:
    assert format_elapsed(seconds) == text


def test_bar_text() -> None:
    assert bar_text(5, 10, 6.79) == f"[{'#' * 15}{' ' * 15}]  50% Completed | 5/10 tasks | 6.8 s"
    assert bar_text(0, 0, 0).startswith(f"[{'#' * 30}] 100%")


def _clean(written: str) -> list[str]:
    """The rendered lines, each checked to be exactly one bar or slab text (no debris)."""
    lines = [line.rstrip() for line in render(written)]
    assert lines[-1] == ""  # every progress line was ended
    for line in lines[:-1]:
        assert _BAR.fullmatch(line) or _SLABS.fullmatch(line), repr(line)
    return lines[:-1]


def test_commands_draw_clean_lines(tmp_path: Path, random_array, monkeypatch) -> None:
    a = random_array((9, 2, 5, 4), "u2")
    sd.to_split_dataset(a, tmp_path / "src", (2,))
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["project", str(tmp_path / "src"), str(tmp_path / "p.npy")]) == 0
    assert main(["convert", str(tmp_path / "src"), str(tmp_path / "o.tif")]) == 0
    assert main(["convert", str(tmp_path / "src"), str(tmp_path / "o.npy")]) == 0
    lines = _clean(terminal.getvalue())
    assert len(lines) == 3
    assert "100% Completed" in lines[0]
    assert lines[1] == "written 1 of 1 slabs"
    assert "100% Completed" in lines[2]


def _slow(x: np.ndarray) -> np.ndarray:
    time.sleep(0.05)
    return x


def test_redrawn_while_tasks_run_and_ended_on_error() -> None:
    stream = Terminal()
    runner = Runner(None, True, ProgressLine(stream))
    x = da.ones(12, chunks=1).map_blocks(_slow, dtype=float)
    with dask.config.set(scheduler="sync"):
        (total,) = runner.compute(x.sum())
    assert total == 12
    assert stream.getvalue().count("\r") > 1  # drawn while running, not only at the end
    (line,) = _clean(stream.getvalue())
    assert "100% Completed" in line

    def fail(block: np.ndarray) -> np.ndarray:
        raise RuntimeError("bad block")

    stream.seek(0)
    stream.truncate()
    with dask.config.set(scheduler="sync"), pytest.raises(RuntimeError, match="bad block"):
        runner.compute(da.ones(4, chunks=1).map_blocks(fail, dtype=float).sum())
    (line,) = _clean(stream.getvalue())
    assert "100%" not in line


@pytest.mark.cluster
@pytest.mark.network
@pytest.mark.subprocess
def test_cluster_progress_is_drawn_on_the_line_not_stdout(client, capsys) -> None:
    stream = Terminal()
    runner = Runner(client, True, ProgressLine(stream))
    x = da.arange(40, chunks=4) * 2
    (total,) = runner.compute(x.sum())
    assert total == 2 * sum(range(40))
    lines = _clean(stream.getvalue())
    assert "100% Completed" in lines[-1]
    assert capsys.readouterr().out == ""
