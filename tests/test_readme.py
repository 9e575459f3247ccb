"""The README's examples run as written.

Python blocks run in order, in one namespace, in a scratch folder. ``console`` blocks are
sessions: each ``$ splitds ...`` line runs as the installed command in another scratch folder
(in order, so later commands see what earlier ones wrote), and its output (stdout and stderr)
must be the lines that follow it, where a line ``...`` stands for any lines and ``...`` inside a
line for any text.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from npe2 import PluginManager
from xarray.backends import plugins

from tests.helpers.cli import package_env, splitds_command
from tests.helpers.entry_points import ensure_entry_points
from tests.helpers.timeouts import TIMEOUT

README = Path(__file__).parents[1] / "README.md"
TEXT = README.read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, flags=re.DOTALL)
SESSIONS = re.findall(r"```console\n(.*?)```", TEXT, flags=re.DOTALL)


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 4
    assert len(SESSIONS) >= 1


def test_setup_commands_come_first() -> None:
    """The first code block is the two set-up commands, as CI (.ci/run) runs them."""
    first = re.search(r"```(\w*)\n(.*?)```", TEXT, flags=re.DOTALL)
    assert first is not None
    assert first.group(2) == 'pip install -e ".[dev]" && splitds demo\npytest\n'
    ci = (README.parent / ".ci" / "run").read_text()
    assert '\npip install -e ".[dev]" && splitds demo\n' in ci
    assert "\npytest\n" in ci


def _github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation but ``-`` and ``_`` dropped,
    each space a ``-``."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _section_headings(text: str) -> list[str]:
    """The ``##`` headings, outside fenced code blocks."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
    return re.findall(r"^## (.+)$", prose, flags=re.MULTILINE)


def test_contents_lists_every_section_in_order() -> None:
    contents = TEXT.split("**Contents**\n\n", 1)[1].split("\n\n", 1)[0]
    entries = re.findall(r"^- \[(.+)\]\(#(.+)\)$", contents, flags=re.MULTILINE)
    assert len(entries) == len(contents.splitlines()), contents
    headings = _section_headings(TEXT)
    assert [title for title, _ in entries] == headings
    assert [anchor for _, anchor in entries] == [_github_anchor(h) for h in headings]
    # The contents come before the first section.
    assert TEXT.index("**Contents**") < TEXT.index("\n## ")


def test_github_anchor() -> None:
    assert _github_anchor("dask's array-expr mode") == "dasks-array-expr-mode"
    assert _github_anchor("Differences from split_dataset 0.4.4") == (
        "differences-from-split_dataset-044"
    )


def test_links_within_the_readme_point_to_headings() -> None:
    prose = re.sub(r"^```.*?^```", "", TEXT, flags=re.DOTALL | re.MULTILINE)
    anchors = {_github_anchor(h) for h in re.findall(r"^#+ (.+)$", prose, flags=re.MULTILINE)}
    links = set(re.findall(r"\]\(#([^)]+)\)", prose))
    assert links, "no internal links found"
    assert links <= anchors, sorted(links - anchors)


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.subprocess
@pytest.mark.network
def test_readme_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The xarray engine and the napari reader are found through entry points, as once installed.
    ensure_entry_points(tmp_path / "site", monkeypatch)
    plugins.list_engines.cache_clear()
    PluginManager.instance().discover()
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}
    for i, block in enumerate(BLOCKS):
        # Running the documentation is the point of this test.
        exec(compile(block, f"README.md python block {i}", "exec"), namespace)  # noqa: S102
    ds = namespace["ds"]
    assert ds.shape == (100, 8, 256, 256)
    assert namespace["mean"].shape == (8, 256, 256)
    assert namespace["maximum"].shape == (8, 256, 256)
    assert namespace["half"].shape == ds.shape
    assert namespace["copy"].shape == (10, 4, 8, 8)
    assert namespace["movie_um"].scale == namespace["doubled"].scale == (0.5, 7.0, 0.6, 0.6)
    assert namespace["one_plane"].shape == (256, 256)
    assert type(namespace["remote"]).__name__ == "RemoteSplitDataset"
    np.testing.assert_array_equal(namespace["one_plane_remote"], ds[60, 4])
    assert namespace["remote_mean"].shape == (8, 256, 256)
    assert namespace["layer"].axis_labels == ("t", "z", "y", "x")
    # The job script shown in the README is the one the recipe builds.
    shown = TEXT.split("The job script it prints:\n\n```bash\n", 1)[1].split("```", 1)[0]
    real = namespace["job_script"].replace(sys.executable, "/path/to/python")
    assert_matches(real, shown, "the dask-jobqueue job script")


def _pattern(expected: str) -> re.Pattern[str]:
    """``expected`` as a regex: a line ``...`` matches any lines, ``...`` in a line any text."""
    parts = []
    for line in expected.strip("\n").splitlines():
        if line == "...":
            parts.append(r"(?:.*\n)*?")
        else:
            parts.append(".*?".join(re.escape(p) for p in line.split("...")) + r"\n")
    return re.compile("".join(parts))


def assert_matches(output: str, expected: str, what: str) -> None:
    text = output.strip("\n") + "\n"
    assert _pattern(expected).fullmatch(text), f"{what}:\n{text}\n--- README shows ---\n{expected}"


def _commands(session: str) -> list[tuple[str, str]]:
    """``(command line, expected output)`` pairs of a console block."""
    pairs: list[tuple[str, list[str]]] = []
    for line in session.splitlines():
        if line.startswith("$ "):
            pairs.append((line[2:], []))
        else:
            assert pairs, f"console block starts with output: {line!r}"
            pairs[-1][1].append(line)
    return [(command, "\n".join(lines)) for command, lines in pairs]


def test_pattern_matching() -> None:
    assert _pattern("a\n...\nz").fullmatch("a\nb\nc\nz\n")
    assert _pattern("a\n...\nz").fullmatch("a\nz\n")
    assert _pattern("on disk ... ratio ...").fullmatch("on disk 1 MB, ratio 2.0\n")
    assert not _pattern("a\nz").fullmatch("a\nb\nz\n")
    assert not _pattern("ratio 2.00").fullmatch("ratio 2.01\n")


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.subprocess
@pytest.mark.network
def test_readme_console_sessions(tmp_path: Path) -> None:
    env = package_env()
    ran = 0
    for session in SESSIONS:
        for command, expected in _commands(session):
            argv = shlex.split(command)
            assert argv[0] == "splitds", command
            proc = subprocess.run(
                [*splitds_command(), *argv[1:]],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=TIMEOUT,
                check=False,
            )
            failed = expected.startswith("splitds: error:")
            assert (proc.returncode != 0) is failed, (command, proc.stdout)
            assert_matches(proc.stdout, expected, f"$ {command}")
            ran += 1
    assert ran >= 5
