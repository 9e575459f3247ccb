"""Parsing and formatting byte sizes for the command line."""

from __future__ import annotations

import pytest

from splitds_dask._cli.sizes import parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("400MB", 400_000_000),
        ("400mb", 400_000_000),
        ("1.5GB", 1_500_000_000),
        ("8 MB", 8_000_000),
        ("512KiB", 512 * 1024),
        ("2MiB", 2 * 1024**2),
        ("1GiB", 1024**3),
        ("3KB", 3000),
        ("1000", 1000),
        ("1e6", 1_000_000),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "MB", "1.2.3MB", "5 parsecs", "-1MB", "0KB", "nan"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)
