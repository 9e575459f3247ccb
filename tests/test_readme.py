"""The README's Python examples run as written (in order, in one namespace, in a scratch folder)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from npe2 import PluginManager
from project_entry_points import ensure_entry_points
from xarray.backends import plugins

README = Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 4


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
    assert namespace["half"].shape == ds.shape
    assert namespace["copy"].shape == (10, 4, 8, 8)
    assert namespace["movie_um"].scale == namespace["doubled"].scale == (0.5, 7.0, 0.6, 0.6)
    assert namespace["one_plane"].shape == (256, 256)
    assert namespace["layer"].axis_labels == ("t", "z", "y", "x")
