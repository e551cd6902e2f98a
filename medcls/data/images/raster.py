"""Picture formats (PNG, JPEG, BMP, TIFF): the size from the header, decoding, gray or RGB.

The size is read from the header before anything is decoded, so a decompression bomb is refused
unread (data.max_image_pixels).
"""

from __future__ import annotations

import io
import struct
import warnings

import cv2
import numpy as np

from medcls.data.images.pixels import gray_if_neutral
from medcls.data.images.types import ImageLimits, UnreadableImage

# medcls works on many small images at once, one per thread (medcls.support.parallel). OpenCV's
# own thread pool would split each small image across cores as well: on 2 cores that doubled the
# CPU time of decoding and preparing (its idle workers spin) and took cores from the model.
cv2.setNumThreads(1)

JPEG_MAGIC = b"\xff\xd8"
_MAGIC = ((b"\x89PNG", ".png"), (JPEG_MAGIC, ".jpg"), (b"BM", ".bmp"), (b"II*\x00", ".tif"), (b"MM\x00*", ".tif"))
# JPEG start-of-frame markers (not DHT C4, JPG C8, DAC CC): the segment that carries the size.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def decode_image(data: bytes, max_pixels: int = ImageLimits.max_pixels) -> np.ndarray:
    """Decode PNG/JPEG/BMP/TIFF bytes to H x W (gray) or H x W x 3 (RGB) uint8/uint16 pixels."""
    if not data:
        raise UnreadableImage("empty file")
    declared_size(data, max_pixels)
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise UnreadableImage("not a decodable image (corrupt, truncated or not an image)")
    if pixels.dtype not in (np.uint8, np.uint16):
        raise UnreadableImage(f"unsupported pixel type {pixels.dtype}")
    return _to_gray_or_rgb(pixels)


def format_suffix(data: bytes) -> str | None:
    """The suffix of the format the bytes are in (a PNG named .jpg is stored as .png)."""
    for magic, suffix in _MAGIC:
        if data.startswith(magic):
            return suffix
    return None


def is_jpeg(data: bytes) -> bool:
    return data.startswith(JPEG_MAGIC)


def declared_size(data: bytes, max_pixels: int = ImageLimits.max_pixels) -> tuple[int, int] | None:
    """(width, height) from the header, nothing decoded; None if unknown. The decompression-bomb
    guard: an image with too many pixels is refused before any decoding."""
    size = _jpeg_size(data) if is_jpeg(data) else _pillow_size(data, max_pixels)
    if size is not None and size[0] * size[1] > max_pixels:
        raise UnreadableImage(f"image too large ({size[0]}x{size[1]} px; data.max_image_pixels is {max_pixels})")
    return size


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walk the JPEG segment headers to the start of frame (Pillow's parser is 20x slower and
    holds the GIL; this runs once per image in every worker)."""
    position = 2
    while position + 9 <= len(data):
        if data[position] != 0xFF:
            return None
        if data[position + 1] == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if data[position + 1] in _SOF_MARKERS:
            height, width = struct.unpack_from(">HH", data, position + 5)
            return width, height
        length = struct.unpack_from(">H", data, position + 2)[0]
        if length < 2:
            return None
        position += 2 + length
    return None


def _pillow_size(data: bytes, max_pixels: int) -> tuple[int, int] | None:
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as header:
                return header.size
        except Image.DecompressionBombError:  # Pillow's own, higher limit: over it, no size is read
            raise UnreadableImage(
                f"image too large (over {2 * Image.MAX_IMAGE_PIXELS} px; data.max_image_pixels is {max_pixels})"
            ) from None
        except Exception:  # a format Pillow does not parse: OpenCV's own limit still applies
            return None


def _to_gray_or_rgb(pixels: np.ndarray) -> np.ndarray:
    """OpenCV decodes to BGR(A); medcls works in grayscale or RGB, alpha dropped."""
    if pixels.ndim == 2:
        return pixels
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3, 4):
        raise UnreadableImage(f"unsupported image shape {pixels.shape}")
    if pixels.shape[2] == 1:
        return pixels[:, :, 0]
    neutral = gray_if_neutral(pixels[:, :, :3])  # gray stored as colour: no conversion needed
    if neutral.ndim == 2:
        return neutral
    return cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGB if pixels.shape[2] == 4 else cv2.COLOR_BGR2RGB)
