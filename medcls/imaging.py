"""Reading images of any supported format: decode, guard, identify, describe.

Shared by ingest and scoring. Every way a file can be unusable ends in UnreadableImage with a
reason fit for a quarantine list (and free of patient data).
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from medcls.config import DicomConfig

# medcls works on many small images at once, one per thread (medcls.parallel). OpenCV's own
# thread pool would split each small image across cores as well: on 2 cores that doubled the CPU
# time of decoding and preparing (its idle workers spin) and took cores from the model.
cv2.setNumThreads(1)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
DICOM_EXTENSIONS = frozenset({".dcm", ".dicom"})
JPEG_MAGIC = b"\xff\xd8"


class UnreadableImage(ValueError):
    """The file is not an image medcls can use; the message says why (for quarantine)."""


@dataclass(frozen=True)
class ImageLimits:
    """Guards applied before and after decoding."""

    min_size: int = 8  # pixels per side
    max_pixels: int = 100_000_000  # per image (all frames read), checked from the header


@dataclass(frozen=True)
class LoadedImage:
    pixels: np.ndarray  # H x W (gray) or H x W x 3 (RGB), uint8 or uint16
    encoded: bytes | None = None  # the original file, worth keeping byte for byte
    suffix: str = ".png"  # of `encoded`
    frame: int | None = None  # index in a multi-frame DICOM object
    patient: str | None = None  # DICOM PatientID (hashed before it is stored anywhere)
    instance: str | None = None  # DICOM SOPInstanceUID


@dataclass(frozen=True)
class ImageStats:
    width: int
    height: int
    channels: int
    bit_depth: int
    # On the 8-bit scale, whatever the bit depth.
    mean: float
    std: float
    min: float
    max: float


def is_candidate_file(path: Path) -> bool:
    """A file worth trying: an image or DICOM extension, or no extension (DICOM often has none)."""
    suffix = path.suffix.lower()
    return suffix in IMAGE_EXTENSIONS or suffix in DICOM_EXTENSIONS or suffix == ""


def load_image(path: Path, limits: ImageLimits, dicom: DicomConfig) -> list[LoadedImage]:
    """The image(s) in a file: one for a picture, one per frame read from a DICOM object."""
    if not is_candidate_file(path):
        raise UnreadableImage(f"not an image file type ({path.suffix})")
    if not path.is_file():
        raise UnreadableImage(_not_a_file(path))
    data = read_file(path)
    if data[128:132] == b"DICM" or path.suffix.lower() in DICOM_EXTENSIONS:
        from medcls.dicom import read_dicom

        return [_checked(image, limits) for image in read_dicom(data, dicom, limits.max_pixels)]
    if not path.suffix:
        raise UnreadableImage("no file extension and not a DICOM file")
    pixels = decode_image(data, limits.max_pixels)
    return [_checked(LoadedImage(pixels, data, _format_suffix(data) or path.suffix.lower()), limits)]


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


def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UnreadableImage(f"cannot read file: {exc.strerror or type(exc).__name__}") from None


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


def printable_path(path: Path | str) -> str:
    """The path as text that any file or table can hold (undecodable name bytes as \\xNN)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _not_a_file(path: Path) -> str:
    if path.is_symlink() and not path.exists():
        return "broken link"
    if not path.exists():
        return "file not found"
    return "not a regular file (a pipe, socket or device)"


def _format_suffix(data: bytes) -> str | None:
    """The suffix of the format the bytes are in (a PNG named .jpg is stored as .png)."""
    for magic, suffix in _MAGIC:
        if data.startswith(magic):
            return suffix
    return None


_MAGIC = ((b"\x89PNG", ".png"), (JPEG_MAGIC, ".jpg"), (b"BM", ".bmp"), (b"II*\x00", ".tif"), (b"MM\x00*", ".tif"))


def _checked(image: LoadedImage, limits: ImageLimits) -> LoadedImage:
    height, width = image.pixels.shape[:2]
    if min(height, width) < limits.min_size:
        raise UnreadableImage(f"too small ({width}x{height} px; data.min_image_size is {limits.min_size})")
    return image


def is_jpeg(data: bytes) -> bool:
    return data.startswith(JPEG_MAGIC)


def declared_size(data: bytes, max_pixels: int = ImageLimits.max_pixels) -> tuple[int, int] | None:
    """(width, height) from the header, nothing decoded; None if unknown. The decompression-bomb
    guard: an image with too many pixels is refused before any decoding."""
    size = _jpeg_size(data) if is_jpeg(data) else _pillow_size(data, max_pixels)
    if size is not None and size[0] * size[1] > max_pixels:
        raise UnreadableImage(f"image too large ({size[0]}x{size[1]} px; data.max_image_pixels is {max_pixels})")
    return size


# JPEG start-of-frame markers (not DHT C4, JPG C8, DAC CC): the segment that carries the size.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


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


def gray_if_neutral(rgb: np.ndarray) -> np.ndarray:
    """Many "colour" medical images are gray stored as RGB; keep those single-channel. (OpenCV
    compares the split planes three times faster than numpy compares strided channels.)"""
    first, second, third = cv2.split(np.ascontiguousarray(rgb))
    if cv2.norm(first, second, cv2.NORM_INF) == 0 and cv2.norm(second, third, cv2.NORM_INF) == 0:
        return first
    return rgb
