"""What reading an image produces, the limits it is read under, and the one error it raises."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medcls.config import DataConfig

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
DICOM_EXTENSIONS = frozenset({".dcm", ".dicom"})


class UnreadableImage(ValueError):
    """The file is not an image medcls can use; the message says why (for quarantine), free of
    patient data."""


def unreadable_reason(exc: Exception) -> str:
    """Why a file could not be read, for a quarantine list. Any exception while reading one file
    is that file's problem, never the run's; an unexpected one is named by its type only (its
    message may quote the file's contents)."""
    if isinstance(exc, UnreadableImage):
        return str(exc)
    return f"not a decodable image ({type(exc).__name__} while reading it)"


# DICOM attributes that say what an image shows, by the names they have in a manifest and a contract.
ACQUISITION_ATTRIBUTES = {
    "modality": "Modality",
    "body_part": "BodyPartExamined",
    "photometric": "PhotometricInterpretation",
}

# OpenCV refuses wider or taller images (CV_IO_MAX_IMAGE_WIDTH/HEIGHT) with an exception of its own:
# medcls refuses them first, from the header.
MAX_SIDE = 1 << 20


@dataclass(frozen=True)
class ImageLimits:
    """Guards applied before decoding (from the file's size and header) and after."""

    min_size: int = 8  # pixels per side
    max_pixels: int = 100_000_000  # per image (all frames read), checked from the header
    max_file_bytes: int = 1 << 30  # a file, or a deflated DICOM data set once inflated

    @classmethod
    def of(cls, cfg: DataConfig) -> ImageLimits:
        """The limits `data.*` sets: the same for ingest and scoring."""
        return cls(cfg.min_image_size, cfg.max_image_pixels, cfg.max_file_megabytes << 20)


@dataclass(frozen=True)
class LoadedImage:
    pixels: np.ndarray  # H x W (gray) or H x W x 3 (RGB), uint8 or uint16
    encoded: bytes | None = None  # the original file, worth keeping byte for byte
    suffix: str = ".png"  # of `encoded`
    frame: int | None = None  # index in a multi-frame DICOM object
    patient: str | None = None  # DICOM PatientID (hashed before it is stored anywhere)
    instance: str | None = None  # DICOM SOPInstanceUID
    # What kind of acquisition a DICOM object says it is (ACQUISITION_ATTRIBUTES, "" where it
    # does not say); empty for other formats. Scoring compares it with the training data's.
    acquisition: dict[str, str] = field(default_factory=dict)


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
