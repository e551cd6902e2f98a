"""One way in for every file: the right reader (picture format or DICOM), then the size guards.

Shared by ingest and scoring. Every way a file can be unusable ends in UnreadableImage with a
reason fit for a quarantine list.
"""

from __future__ import annotations

import os
from pathlib import Path

from medcls.config import DicomConfig
from medcls.data.images.dicom import read_dicom
from medcls.data.images.raster import decode_image, format_suffix
from medcls.data.images.types import DICOM_EXTENSIONS, IMAGE_EXTENSIONS, ImageLimits, LoadedImage, UnreadableImage


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
    data = read_file(path, limits.max_file_bytes)
    if data[128:132] == b"DICM" or path.suffix.lower() in DICOM_EXTENSIONS:
        return [_checked(image, limits) for image in read_dicom(data, dicom, limits)]
    if not path.suffix:
        raise UnreadableImage("no file extension and not a DICOM file")
    pixels = decode_image(data, limits)
    return [LoadedImage(pixels, data, format_suffix(data) or path.suffix.lower())]


def read_file(path: Path, max_bytes: int = ImageLimits.max_file_bytes) -> bytes:
    """The file's bytes, if it is no larger than `max_bytes`."""
    try:
        with path.open("rb") as stream:
            # By its size (read(n) allocates n bytes first): at most max_bytes + 1 of a file still growing.
            data = stream.read(min(os.fstat(stream.fileno()).st_size, max_bytes) + 1)
    except OSError as exc:
        raise UnreadableImage(f"cannot read file: {exc.strerror or type(exc).__name__}") from None
    if len(data) > max_bytes:
        raise UnreadableImage(f"file too large (over {max_bytes >> 20} MB; data.max_file_megabytes)")
    return data


def _not_a_file(path: Path) -> str:
    if path.is_symlink() and not path.exists():
        return "broken link"
    if not path.exists():
        return "file not found"
    return "not a regular file (a pipe, socket or device)"


def _checked(image: LoadedImage, limits: ImageLimits) -> LoadedImage:
    height, width = image.pixels.shape[:2]
    if min(height, width) < limits.min_size:
        raise UnreadableImage(f"too small ({width}x{height} px; data.min_image_size is {limits.min_size})")
    return image
