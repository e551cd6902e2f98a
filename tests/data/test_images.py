"""Decoding and identifying images: formats, bit depths, and a reason for every unusable file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from medcls.config import DicomConfig
from medcls.data.images import (
    ImageLimits,
    UnreadableImage,
    declared_size,
    decode_image,
    describe_image,
    encode_png,
    image_id,
    load_image,
    read_file,
)

GRAY = (np.arange(24 * 32, dtype=np.uint32).reshape(24, 32) % 251).astype(np.uint8)


def _encoded(pixels: np.ndarray, suffix: str, options: list[int] | None = None) -> bytes:
    ok, data = cv2.imencode(suffix, pixels, options or [])
    assert ok
    return data.tobytes()


def test_png_round_trip_keeps_pixels_and_id():
    decoded = decode_image(encode_png(GRAY))
    assert np.array_equal(decoded, GRAY)
    assert image_id(decoded) == image_id(GRAY)


def test_same_pixels_same_id_in_any_lossless_format():
    assert image_id(decode_image(_encoded(GRAY, ".bmp"))) == image_id(decode_image(_encoded(GRAY, ".png")))
    assert image_id(GRAY) != image_id(GRAY.T.copy())


def test_colour_is_rgb_and_gray_stored_as_rgb_is_gray():
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 200  # red
    decoded = decode_image(encode_png(rgb))
    assert decoded.shape == (8, 8, 3)
    assert decoded[0, 0].tolist() == [200, 0, 0]
    gray_as_bgr = cv2.cvtColor(GRAY, cv2.COLOR_GRAY2BGR)
    assert decode_image(_encoded(gray_as_bgr, ".png")).shape == GRAY.shape


def test_alpha_is_dropped_and_16_bit_is_kept():
    bgra = np.dstack([cv2.cvtColor(GRAY, cv2.COLOR_GRAY2BGR), np.full(GRAY.shape, 128, np.uint8)])
    assert decode_image(_encoded(bgra, ".png")).shape == GRAY.shape
    deep = GRAY.astype(np.uint16) * 257
    decoded = decode_image(_encoded(deep, ".png"))
    assert decoded.dtype == np.uint16
    stats = describe_image(decoded)
    assert stats.bit_depth == 16
    assert stats.mean == pytest.approx(GRAY.mean(), rel=1e-3)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"this is a text file, not a picture", "not a decodable image"),
        (_encoded(GRAY, ".png")[:40], "not a decodable image"),
    ],
)
def test_unusable_bytes_say_why(data: bytes, reason: str):
    with pytest.raises(UnreadableImage, match=reason):
        decode_image(data)


def test_unreadable_file_says_why(tmp_path: Path):
    with pytest.raises(UnreadableImage, match="cannot read file"):
        read_file(tmp_path / "absent.png")


@pytest.mark.parametrize("progressive", [0, 1])
def test_jpeg_size_is_read_from_the_header(progressive: int):
    data = _encoded(np.zeros((37, 53, 3), np.uint8), ".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, progressive])
    assert declared_size(data) == (53, 37)
    assert declared_size(data[:12]) is None  # truncated before the frame header: unknown
    with pytest.raises(UnreadableImage, match=r"image too large \(53x37 px"):
        decode_image(data, ImageLimits(max_pixels=1000))


@pytest.mark.parametrize(
    ("suffix", "pixels"),
    [
        (".tif", GRAY),
        (".tif", GRAY.astype(np.uint16) * 257),
        (".tiff", np.dstack([GRAY, np.roll(GRAY, 5, axis=1), np.zeros_like(GRAY)])),
        (".bmp", GRAY),
        (".jpg", GRAY),
    ],
)
def test_supported_formats_load_with_their_bit_depth(tmp_path: Path, suffix: str, pixels: np.ndarray):
    path = tmp_path / f"scan{suffix}"
    path.write_bytes(_encoded(pixels, suffix))
    (image,) = load_image(path, ImageLimits(), DicomConfig())
    assert image.pixels.dtype == pixels.dtype and image.pixels.shape == pixels.shape
    if suffix != ".jpg":  # lossless formats keep every value (colour comes back as RGB)
        expected = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB) if pixels.ndim == 3 else pixels
        assert np.array_equal(image.pixels, expected)
