"""What reading an image produces, the limits it is read under, and the one error it raises."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
DICOM_EXTENSIONS = frozenset({".dcm", ".dicom"})


class UnreadableImage(ValueError):
    """The file is not an image medcls can use; the message says why (for quarantine), free of
    patient data."""


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
