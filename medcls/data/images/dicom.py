"""DICOM pixel data to images, with pydicom.

Modality LUT (rescale slope/intercept, e.g. to Hounsfield units), then the VOI window (the
file's, a fixed one from params, or the full range) to 16 bits, MONOCHROME1 inverted so that
bright means dense everywhere, colour (RGB, YBR, palette) to RGB. Only pixels leave this module:
no header value is stored, logged or put in an error message, except PatientID and
SOPInstanceUID, which callers hash or use to look up labels.
"""

from __future__ import annotations

import contextlib
import io
import logging
import struct
import warnings
import zlib
from collections.abc import Iterator

import numpy as np

from medcls.config import DicomConfig
from medcls.data.images.types import ACQUISITION_ATTRIBUTES, ImageLimits, LoadedImage, UnreadableImage

_EXTREMES = np.array([-1e12, 1e12])
_DEFLATED = b"1.2.840.10008.1.2.1.99"  # Deflated Explicit VR Little Endian: the data set is zlib-compressed


def read_dicom(data: bytes, cfg: DicomConfig, limits: ImageLimits) -> list[LoadedImage]:
    """The frames `cfg.frames` asks for, as 16-bit gray or RGB images."""
    with quiet_pydicom():
        try:
            _refuse_deflate_bomb(data, limits.max_file_bytes)
            return _read(data, cfg, limits.max_pixels)
        except UnreadableImage:
            raise
        except Exception as exc:  # header values are parsed lazily: any of them can be malformed
            raise UnreadableImage(f"corrupt DICOM file ({type(exc).__name__} in its header)") from None


@contextlib.contextmanager
def quiet_pydicom() -> Iterator[None]:
    """pydicom warns and logs with element values (names, dates) on malformed data: none of that
    may reach a log."""
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _refuse_deflate_bomb(data: bytes, max_bytes: int) -> None:
    """pydicom inflates a deflated data set whole before reading any of it: inflate it here first,
    never past `max_bytes`."""
    if _DEFLATED not in data[:4096]:  # the transfer syntax UID sits in the file meta group
        return
    group_length = data[132:138] == b"\x02\x00\x00\x00UL" and struct.unpack_from("<I", data, 140)[0]
    if not group_length:
        raise UnreadableImage("deflated DICOM without a file meta group length (refused unread)")
    inflated = zlib.decompressobj(-zlib.MAX_WBITS).decompress(data[144 + group_length :], max_bytes + 1)
    if len(inflated) > max_bytes:
        raise UnreadableImage(f"deflated DICOM inflates past {max_bytes >> 20} MB (data.max_file_megabytes)")


def _read(data: bytes, cfg: DicomConfig, max_pixels: int) -> list[LoadedImage]:
    dataset = _parse(data)
    if "PixelData" not in dataset:
        raise UnreadableImage("DICOM without pixel data (a report, structured document, plan...)")
    if str(dataset.get("BurnedInAnnotation", "")).upper() == "YES" and not cfg.allow_burned_in_annotation:
        raise UnreadableImage(
            "DICOM BurnedInAnnotation is YES: text in the pixels may identify the patient "
            "(data.dicom.allow_burned_in_annotation)"
        )
    frames = _frames(dataset, cfg.frames, max_pixels)
    patient = str(dataset.get("PatientID", "") or "").strip() or None
    instance = str(dataset.get("SOPInstanceUID", "") or "").strip() or None
    acquisition = {name: str(dataset.get(keyword, "") or "").strip().upper()
                   for name, keyword in ACQUISITION_ATTRIBUTES.items()}  # fmt: skip
    return [
        LoadedImage(_to_image(frame, dataset, cfg), frame=index if len(frames) > 1 else None,
                    patient=patient, instance=instance, acquisition=acquisition)
        for index, frame in enumerate(frames)
    ]  # fmt: skip


def _parse(data: bytes):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError:
        raise UnreadableImage("not a DICOM file (no DICM header)") from None
    except Exception as exc:
        raise UnreadableImage(f"corrupt DICOM file ({type(exc).__name__} while reading the header)") from None


def _frames(dataset, which: str, max_pixels: int) -> list[np.ndarray]:
    from pydicom.pixels import pixel_array

    count = int(dataset.get("NumberOfFrames", 1) or 1)
    wanted = count if which == "all" else 1
    rows, columns = int(dataset.get("Rows", 0)), int(dataset.get("Columns", 0))
    if rows * columns * wanted > max_pixels:
        raise UnreadableImage(
            f"image too large ({columns}x{rows} px x {wanted} frames; data.max_image_pixels is {max_pixels})"
        )
    syntax = dataset.file_meta.get("TransferSyntaxUID")
    try:
        pixels = pixel_array(dataset, index=None if which == "all" else 0)
    except Exception as exc:
        name = syntax.name if syntax is not None else "unknown transfer syntax"
        raise UnreadableImage(f"cannot decode DICOM pixel data ({name}; {type(exc).__name__})") from None
    # index=0 decodes one frame; all frames of a multi-frame object come stacked on axis 0.
    return list(pixels) if which == "all" and count > 1 else [pixels]


def _to_image(frame: np.ndarray, dataset, cfg: DicomConfig) -> np.ndarray:
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        return _rgb(apply_color_lut(frame, dataset))
    if frame.ndim == 3:
        return _rgb(frame)  # RGB, or YBR which pydicom already converted to RGB
    if not photometric.startswith("MONOCHROME"):
        raise UnreadableImage(f"unsupported DICOM photometric interpretation {photometric}")
    scaled = _windowed(frame, dataset, cfg)
    image = np.round(scaled * 65535.0).astype(np.uint16)
    return 65535 - image if photometric == "MONOCHROME1" else image


def _windowed(frame: np.ndarray, dataset, cfg: DicomConfig) -> np.ndarray:
    """Modality LUT, then the VOI window, scaled to 0..1."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = apply_modality_lut(frame, dataset).astype(np.float64)
    if isinstance(cfg.window, tuple):
        dataset.WindowCenter, dataset.WindowWidth = cfg.window
        dataset.VOILUTFunction = "LINEAR"
        if "VOILUTSequence" in dataset:
            del dataset.VOILUTSequence
    has_window = "WindowCenter" in dataset or "VOILUTSequence" in dataset
    if cfg.window == "none" or not has_window:
        low, high = values.min(), values.max()
    else:
        values = apply_voi_lut(values, dataset).astype(np.float64)
        # The window's output range, whatever its bit depth or shape (linear, sigmoid, LUT).
        low, high = np.sort(apply_voi_lut(_EXTREMES.copy(), dataset).astype(np.float64))
    if high <= low:
        return np.zeros(values.shape)
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def _rgb(frame: np.ndarray) -> np.ndarray:
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise UnreadableImage(f"unsupported DICOM colour layout {frame.shape}")
    if frame.dtype == np.uint8 or frame.dtype == np.uint16:
        return frame
    return np.clip(frame, 0, 65535).astype(np.uint16)
