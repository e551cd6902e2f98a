"""Reading images: decode, identify by pixel content, describe. Shared by ingest and scoring."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})


class UnreadableImage(ValueError):
    """The file is not an image medcls can use; the message says why (for quarantine)."""


@dataclass(frozen=True)
class ImageStats:
    width: int
    height: int
    channels: int
    bit_depth: int
    mean: float  # on the 8-bit scale, whatever the bit depth
    std: float


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def decode_image(data: bytes) -> np.ndarray:
    """Decode image bytes to H x W (grayscale) or H x W x 3 (RGB) uint8/uint16 pixels."""
    if not data:
        raise UnreadableImage("empty file")
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise UnreadableImage("not a decodable image (corrupt, truncated or not an image)")
    if pixels.dtype not in (np.uint8, np.uint16):
        raise UnreadableImage(f"unsupported pixel type {pixels.dtype}")
    return _to_gray_or_rgb(pixels)


def read_image(path: Path) -> tuple[bytes, np.ndarray]:
    """The file's bytes and its decoded pixels; UnreadableImage says why it cannot be used."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableImage(f"cannot read file: {exc.strerror or exc}") from None
    return data, decode_image(data)


def image_id(pixels: np.ndarray) -> str:
    """SHA-256 of the pixel content: the same image has the same id in any file format."""
    digest = hashlib.sha256(f"{pixels.shape}{pixels.dtype}".encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


def describe_image(pixels: np.ndarray) -> ImageStats:
    scale = 255.0 / 65535.0 if pixels.dtype == np.uint16 else 1.0
    return ImageStats(
        width=int(pixels.shape[1]),
        height=int(pixels.shape[0]),
        channels=1 if pixels.ndim == 2 else int(pixels.shape[2]),
        bit_depth=8 * pixels.dtype.itemsize,
        mean=float(pixels.mean() * scale),
        std=float(pixels.std() * scale),
    )


def encode_png(pixels: np.ndarray) -> bytes:
    """Lossless PNG bytes (RGB pixels are stored as RGB, OpenCV's BGR order handled here)."""
    bgr = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR) if pixels.ndim == 3 else pixels
    ok, buffer = cv2.imencode(".png", bgr)
    if not ok:
        raise UnreadableImage("cannot encode as PNG")
    return buffer.tobytes()


def _to_gray_or_rgb(pixels: np.ndarray) -> np.ndarray:
    """OpenCV decodes to BGR(A); medcls works in grayscale or RGB, alpha dropped."""
    if pixels.ndim == 2:
        return pixels
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3, 4):
        raise UnreadableImage(f"unsupported image shape {pixels.shape}")
    if pixels.shape[2] == 1:
        return pixels[:, :, 0]
    code = cv2.COLOR_BGRA2RGB if pixels.shape[2] == 4 else cv2.COLOR_BGR2RGB
    rgb = cv2.cvtColor(pixels, code)
    # Many "colour" medical images are gray stored as RGB; keep them single-channel.
    if np.array_equal(rgb[:, :, 0], rgb[:, :, 1]) and np.array_equal(rgb[:, :, 1], rgb[:, :, 2]):
        return rgb[:, :, 0].copy()
    return rgb
