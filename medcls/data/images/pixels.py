"""Facts about decoded pixels: their content id and statistics, and lossless storage as PNG."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np

from medcls.data.images.types import ImageStats, UnreadableImage


def image_id(pixels: np.ndarray) -> str:
    """SHA-256 of the pixel content: the same image has the same id in any file format."""
    digest = hashlib.sha256(f"{pixels.shape}{pixels.dtype}".encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


def describe_image(pixels: np.ndarray) -> ImageStats:
    scale = 255.0 / 65535.0 if pixels.dtype == np.uint16 else 1.0
    single_channel = pixels.reshape(pixels.shape[0], -1)  # all channels together
    mean, std = cv2.meanStdDev(single_channel)
    low, high, _, _ = cv2.minMaxLoc(single_channel)
    return ImageStats(
        width=int(pixels.shape[1]),
        height=int(pixels.shape[0]),
        channels=1 if pixels.ndim == 2 else int(pixels.shape[2]),
        bit_depth=8 * pixels.dtype.itemsize,
        mean=float(mean[0, 0]) * scale,
        std=float(std[0, 0]) * scale,
        min=low * scale,
        max=high * scale,
    )


def encode_png(pixels: np.ndarray) -> bytes:
    """Lossless PNG bytes (RGB pixels are stored as RGB, OpenCV's BGR order handled here)."""
    bgr = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR) if pixels.ndim == 3 else pixels
    ok, buffer = cv2.imencode(".png", bgr)
    if not ok:
        raise UnreadableImage("cannot encode as PNG")
    return buffer.tobytes()


def gray_if_neutral(rgb: np.ndarray) -> np.ndarray:
    """Many "colour" medical images are gray stored as RGB; keep those single-channel. (OpenCV
    compares the split planes three times faster than numpy compares strided channels.)"""
    first, second, third = cv2.split(np.ascontiguousarray(rgb))
    if cv2.norm(first, second, cv2.NORM_INF) == 0 and cv2.norm(second, third, cv2.NORM_INF) == 0:
        return first
    return rgb
