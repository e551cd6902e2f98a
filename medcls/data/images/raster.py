"""Picture formats (PNG, JPEG, BMP, TIFF): the format and size from the header, decoding, gray or RGB.

Nothing is decoded before the bytes are known to be one of these formats and their header gives a
size within the limits: a decompression bomb, an image with absurd sides or another format under
a picture's name (a Radiance HDR called .png) is refused unread.
"""

from __future__ import annotations

import io
import struct
import warnings

import cv2
import numpy as np

from medcls.data.images.pixels import gray_if_neutral
from medcls.data.images.types import MAX_SIDE, ImageLimits, UnreadableImage

# medcls works on many small images at once, one per thread (medcls.support.parallel). OpenCV's
# own thread pool would split each small image across cores as well: on 2 cores that doubled the
# CPU time of decoding and preparing (its idle workers spin) and took cores from the model.
cv2.setNumThreads(1)

JPEG_MAGIC = b"\xff\xd8"
_MAGIC = ((b"\x89PNG", ".png"), (JPEG_MAGIC, ".jpg"), (b"BM", ".bmp"), (b"II*\x00", ".tif"), (b"MM\x00*", ".tif"))
# JPEG start-of-frame markers (not DHT C4, JPG C8, DAC CC): the segment that carries the size.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


_DEFAULT_LIMITS = ImageLimits()


def decode_image(data: bytes, limits: ImageLimits = _DEFAULT_LIMITS) -> np.ndarray:
    """Decode PNG/JPEG/BMP/TIFF bytes to H x W (gray) or H x W x 3 (RGB) uint8/uint16 pixels."""
    checked_size(data, limits)
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


def checked_size(data: bytes, limits: ImageLimits) -> tuple[int, int]:
    """(width, height) of a picture within `limits`, read from its header; anything else is an
    UnreadableImage saying why, before a byte is decoded."""
    if not data:
        raise UnreadableImage("empty file")
    if format_suffix(data) is None:
        raise UnreadableImage("not a decodable image: its bytes are no PNG, JPEG, BMP or TIFF")
    size = declared_size(data)
    if size is None:
        raise UnreadableImage("not a decodable image: no size in its header (corrupt or truncated)")
    width, height = size
    if max(width, height) > MAX_SIDE:
        raise UnreadableImage(f"image side too large ({width}x{height} px; at most {MAX_SIDE} per side)")
    if width * height > limits.max_pixels:
        raise UnreadableImage(f"image too large ({width}x{height} px; data.max_image_pixels is {limits.max_pixels})")
    if min(width, height) < limits.min_size:
        raise UnreadableImage(f"too small ({width}x{height} px; data.min_image_size is {limits.min_size})")
    return size


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a picture's header, nothing decoded; None if the header gives none."""
    if is_jpeg(data):
        return _jpeg_size(data)
    if data.startswith(b"\x89PNG"):
        return _png_size(data)
    if data.startswith(b"BM"):
        return _bmp_size(data)
    return _pillow_size(data)


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


def _png_size(data: bytes) -> tuple[int, int] | None:
    """From the IHDR chunk, which a PNG must start with."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def _bmp_size(data: bytes) -> tuple[int, int] | None:
    """From the DIB header (BITMAPINFOHEADER and later; a negative height means top-down rows)."""
    if len(data) < 26 or struct.unpack_from("<I", data, 14)[0] < 40:
        return None
    width, height = struct.unpack_from("<ii", data, 18)
    return (width, abs(height)) if width > 0 and height != 0 else None


def _pillow_size(data: bytes) -> tuple[int, int] | None:
    """TIFF (many layouts): Pillow reads the first image's tags without decoding."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as header:
                return header.size
        except Image.DecompressionBombError:  # Pillow refuses even to say how large
            raise UnreadableImage(f"image too large (over {2 * Image.MAX_IMAGE_PIXELS} px by its header)") from None
        except Exception:  # corrupt header: no size known
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
