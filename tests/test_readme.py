"""The README's Python examples run as written (in order, in one namespace, in a scratch folder)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 4


def test_readme_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}
    for i, block in enumerate(BLOCKS):
        # Running the documentation is the point of this test.
        exec(compile(block, f"README.md python block {i}", "exec"), namespace)  # noqa: S102
    ds = namespace["ds"]
    assert ds.shape == (100, 8, 256, 256)
    assert namespace["mean"].shape == (8, 256, 256)
    assert namespace["half"].shape == ds.shape
    assert namespace["copy"].shape == (10, 4, 8, 8)
