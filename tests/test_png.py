"""The dependency-free PNG writer, checked with an independent decoder (tests/helpers/png.py)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest

from splitds_dask._cli.png import encode_png, write_png
from tests.helpers.png import decode_png, png_size

IMAGES = {
    "uint8 random": np.random.default_rng(0).integers(0, 256, (37, 53), dtype=np.uint8),
    "uint16 random": np.random.default_rng(1).integers(0, 65536, (20, 31), dtype=np.uint16),
    "uint16 extremes": np.array([[0, 1, 255, 256], [65535, 65534, 4096, 0x1234]], np.uint16),
    "one pixel": np.array([[7]], dtype=np.uint8),
    "one row": np.arange(100, dtype=np.uint8)[None, :],
    "one column": np.arange(100, dtype=np.uint16)[:, None] * 600,
    "gradient": np.add.outer(np.arange(64), np.arange(64)).astype(np.uint8),
    "non-contiguous": np.arange(40 * 30, dtype=np.uint16).reshape(40, 30)[::2, ::-3],
    "big-endian": np.arange(12, dtype=">u2").reshape(3, 4) * 5000,
}


@pytest.mark.parametrize("name", list(IMAGES))
def test_round_trip(name: str, tmp_path: Path) -> None:
    image = IMAGES[name]
    path = write_png(tmp_path / "image.png", image)
    assert path == tmp_path / "image.png"
    decoded = decode_png(path.read_bytes())
    assert decoded.shape == image.shape
    assert decoded.dtype == (np.uint16 if image.dtype.itemsize == 2 else np.uint8)
    np.testing.assert_array_equal(decoded, image)
    assert png_size(path) == image.shape
    assert [p.name for p in tmp_path.iterdir()] == ["image.png"]  # no temporary file left


def test_bit_depth_follows_dtype() -> None:
    assert struct.unpack(">B", encode_png(np.zeros((2, 2), np.uint8))[24:25]) == (8,)
    assert struct.unpack(">B", encode_png(np.zeros((2, 2), np.uint16))[24:25]) == (16,)


def test_bool_is_black_and_white() -> None:
    mask = np.array([[True, False], [False, True]])
    np.testing.assert_array_equal(decode_png(encode_png(mask)), np.array([[255, 0], [0, 255]]))


def test_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "image.png"
    path.write_bytes(b"old")
    write_png(str(path), IMAGES["gradient"])
    np.testing.assert_array_equal(decode_png(path.read_bytes()), IMAGES["gradient"])


@pytest.mark.parametrize(
    ("image", "error"),
    [
        (np.zeros((2, 2), np.float32), TypeError),
        (np.zeros((2, 2), np.int16), TypeError),
        (np.zeros((2, 2, 3), np.uint8), ValueError),
        (np.zeros(5, np.uint8), ValueError),
        (np.zeros((0, 5), np.uint8), ValueError),
    ],
)
def test_rejects_what_it_cannot_write(image: np.ndarray, error: type, tmp_path: Path) -> None:
    with pytest.raises(error):
        write_png(tmp_path / "bad.png", image)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["uint8 random", "uint16 random", "one column", "non-contiguous"])
def test_pillow_reads_the_same_pixels(name: str) -> None:
    """A second, independent decoder reads the same pixels."""
    from PIL import Image

    image = IMAGES[name]
    with Image.open(io.BytesIO(encode_png(image))) as decoded:
        decoded.load()
        assert decoded.size == (image.shape[1], image.shape[0])
        pixels = np.asarray(decoded)
    np.testing.assert_array_equal(pixels.astype(np.int64), image.astype(np.int64))
