"""Preprocess stage: OpenCV turns every ingested image into a fixed-size uint8 array.

`prepare_image` is the one preprocessing function: training data and scored images both go
through it, with the contract saved beside the model, so there is no train/serve skew.
Scaling to [0, 1] and standardisation happen inside the model.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from medcls.catalog import PREPARED_SPLITS, ProcessedData, RawData
from medcls.config import PreprocessConfig
from medcls.data.images import ACQUISITION_ATTRIBUTES, LoadedImage, declared_size, decode_image, is_jpeg, read_file
from medcls.data.manifest import load_dataset_facts, load_manifest
from medcls.errors import DataError
from medcls.support.files import read_json, staged_dir, write_json
from medcls.support.parallel import ordered_map
from medcls.support.progress import track


@dataclass(frozen=True)
class PreprocessResult:
    processed_dir: Path
    counts: dict[str, int]
    contract: dict


def preprocess_data(cfg: PreprocessConfig, raw_dir: Path, out_dir: Path) -> PreprocessResult:
    """Write `{split}.npz` (x: N x S x S x C uint8, y: class index, image_id) and the contract."""
    manifest = load_manifest(raw_dir)
    dataset = load_dataset_facts(raw_dir)
    raw = RawData(raw_dir)
    train = manifest[manifest["split"] == "train"]
    resolved = resolve_image_size(resolve_channels(cfg, manifest["channels"]), train)
    # The input contract, saved with the model: scoring prepares images exactly like this, and
    # sends images unlike the training ones (acquisition) to review.
    contract = {"class_names": dataset["class_names"], "preprocess": resolved.model_dump(), "dicom": dataset["dicom"],
                "acquisition": training_acquisition(train)}  # fmt: skip
    class_index = {name: index for index, name in enumerate(dataset["class_names"])}
    counts = {}
    with staged_dir(out_dir) as staging:
        processed = ProcessedData(staging)
        for split in PREPARED_SPLITS:
            rows = manifest[manifest["split"] == split]
            images = prepare_files([raw.image(file) for file in rows["file"]], resolved, f"preprocess {split}")
            labels = rows["label"].map(class_index).to_numpy(np.int32)
            np.savez(processed.split(split), x=images, y=labels, image_id=rows["image_id"].to_numpy(str))
            counts[split] = len(rows)
        write_json(processed.contract, contract)
    return PreprocessResult(out_dir, counts, contract)


def resolve_channels(cfg: PreprocessConfig, channels: object) -> PreprocessConfig:
    """`channels: auto` becomes 3 if any image is in colour, else 1."""
    if cfg.channels != "auto":
        return cfg
    return cfg.model_copy(update={"channels": 3 if 3 in set(channels) else 1})


AUTO_MAX_SIZE = 64  # px: on the chest X-rays, 64 beat 128 on validation (BENCHMARKS.md), at a quarter of the cost
AUTO_MIN_SIZE = 16  # px: three stages halve it twice


def resolve_image_size(cfg: PreprocessConfig, train: pd.DataFrame) -> PreprocessConfig:
    """`image_size: auto` becomes the training images' own size (the median of their longer
    sides: never upscaled beyond what the data holds), between 16 and 64 px, a multiple of 4."""
    if cfg.image_size != "auto":
        return cfg
    native = int(np.median(np.maximum(train["width"], train["height"]))) if len(train) else AUTO_MAX_SIZE
    size = max(AUTO_MIN_SIZE, min(AUTO_MAX_SIZE, native)) // 4 * 4
    logging.getLogger(__name__).info("preprocess.image_size auto: %d px (training images: %d px)", size, native)
    return cfg.model_copy(update={"image_size": size})


def prepare_files(paths: list[Path], cfg: PreprocessConfig, description: str = "preprocess") -> np.ndarray:
    """Read and prepare stored image files on all cores (`description` names it in progress reports)."""
    prepared = ordered_map(partial(prepare_file, cfg=cfg), paths, cfg.workers)
    images = list(track(prepared, description, total=len(paths)))
    channels = int(cfg.channels)
    return np.stack(images) if images else np.zeros((0, cfg.image_size, cfg.image_size, channels), np.uint8)


def prepare_file(path: Path, cfg: PreprocessConfig) -> np.ndarray:
    return prepare_encoded(read_file(path), cfg)


def prepare_encoded(data: bytes, cfg: PreprocessConfig) -> np.ndarray:
    """`prepare_image` of an encoded image (PNG, JPEG, ...): what training reads from data/raw and
    scoring from the inbox. A JPEG is decoded at a reduced scale (libjpeg's DCT scaling) when that
    still covers the model's input: nearly the same pixels, a fraction of the decoding time."""
    pixels = _reduced_jpeg(data, cfg)
    return prepare_image(pixels if pixels is not None else decode_image(data), cfg)


def prepare_loaded(image: LoadedImage, cfg: PreprocessConfig) -> np.ndarray:
    """What training sees for a loaded file: ingest stores an image file's bytes as they are (and
    DICOM pixels as a lossless PNG, which decodes to the same pixels), so this is
    `prepare_encoded` of those bytes, reusing the pixels already decoded where it would decode
    them in full again."""
    reduced = _reduced_jpeg(image.encoded, cfg) if image.encoded is not None else None
    return prepare_image(reduced if reduced is not None else image.pixels, cfg)


def prepare_image(pixels: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Grayscale/RGB, 8/16-bit pixels -> S x S x C uint8. The image is shrunk first, so every
    later step (intensity window, denoise, CLAHE) works at the model's resolution; padding comes
    last so that it counts in neither the window nor the contrast tiles."""
    if cfg.channels == "auto" or cfg.image_size == "auto":
        raise ValueError("prepare_image needs a resolved size and channels, see resolve_image_size, resolve_channels")
    image = _fit(_convert_channels(pixels, int(cfg.channels)), cfg.image_size, cfg.resize)
    image = _to_8bit(image, cfg.normalize == "percentile")
    if cfg.denoise:
        image = _denoise(image, cfg.denoise_strength)
    if cfg.clahe:
        image = _clahe(image, cfg.clahe_clip_limit, cfg.clahe_tile_grid)
    return _pad(image, cfg.image_size).reshape(cfg.image_size, cfg.image_size, -1)


def load_split(processed_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The arrays of one split: images, class indices, image ids."""
    path = ProcessedData(processed_dir).split(split)
    if not path.exists():
        raise DataError(f"{path}: missing; run `medcls preprocess` first")
    with np.load(path) as arrays:
        return arrays["x"], arrays["y"], arrays["image_id"]


def training_acquisition(train: pd.DataFrame) -> dict[str, list]:
    """What the training images were: their channel counts (1 gray, 3 colour) and, for DICOM,
    the values of each acquisition attribute (a DICOM image with another value is unlike them)."""
    facts: dict[str, list] = {"channels": sorted(int(value) for value in train["channels"].unique())}
    for name in ACQUISITION_ATTRIBUTES:
        if name in train.columns:
            facts[name] = sorted(value for value in train[name].unique() if value)
    return facts


def load_contract(processed_dir: Path) -> dict:
    """The input contract preprocess saved: class names, preprocessing, DICOM conversion."""
    return read_json(ProcessedData(processed_dir).contract)


_REDUCED_DECODE = {
    1: {2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4, 8: cv2.IMREAD_REDUCED_GRAYSCALE_8},
    3: {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8},
}


def _reduced_jpeg(data: bytes, cfg: PreprocessConfig) -> np.ndarray | None:
    """A JPEG decoded at 1/2, 1/4 or 1/8 scale, the smallest that keeps the fitted side at least
    `image_size`; None when the data is no JPEG or cannot be reduced."""
    size = declared_size(data) if is_jpeg(data) else None
    if size is None:
        return None
    side = max(size) if cfg.resize == "pad" else min(size)  # the side that is scaled to image_size
    factor = next((f for f in (8, 4, 2) if side // f >= cfg.image_size), None)
    if factor is None:
        return None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), _REDUCED_DECODE[int(cfg.channels)][factor])
    if image is None:
        return None
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if image.ndim == 3 else image


_per_thread = threading.local()


def _clahe_operator(clip_limit: float, tile_grid: int):
    """One CLAHE object per thread and setting (creating one costs more than applying it; they
    keep state, so threads do not share them)."""
    cache = _per_thread.__dict__.setdefault("clahe", {})
    key = (clip_limit, tile_grid)
    if key not in cache:
        cache[key] = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tile_grid, tile_grid))
    return cache[key]


def _to_8bit(pixels: np.ndarray, stretch: bool) -> np.ndarray:
    """Map the 0.5-99.5 percentile range to 0-255 (device-independent exposure), or just scale
    the bit depth down."""
    if not stretch:
        return (pixels >> 8).astype(np.uint8) if pixels.dtype == np.uint16 else pixels
    levels = 65536 if pixels.dtype == np.uint16 else 256
    flat = pixels.reshape(1, -1)  # one window for all channels, so colours keep their balance
    histogram = cv2.calcHist([flat], [0], None, [levels], [0, levels]).reshape(-1)
    low, high = np.searchsorted(np.cumsum(histogram), [0.005 * pixels.size, 0.995 * pixels.size])
    if high <= low:  # constant image: nothing to stretch
        return np.zeros(pixels.shape, np.uint8)
    # Saturating OpenCV arithmetic: below `low` becomes 0, above `high` 255, in two C calls.
    shifted = cv2.subtract(pixels, np.full(pixels.shape, low, pixels.dtype))
    return cv2.convertScaleAbs(shifted, alpha=255.0 / (high - low))


def _convert_channels(image: np.ndarray, channels: int) -> np.ndarray:
    if channels == 1 and image.ndim == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if channels == 3 and image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return image


def _fit(image: np.ndarray, size: int, mode: str) -> np.ndarray:
    """`stretch` to S x S, or (`pad`) scale so that the longer side is S, keeping the aspect."""
    height, width = image.shape[:2]
    target = (size, size) if mode == "stretch" else fitted_size(height, width, size)
    shrinking = target[0] * target[1] < width * height
    return cv2.resize(image, target, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def fitted_size(height: int, width: int, size: int) -> tuple[int, int]:
    """Width and height with the longer side scaled to `size`, keeping the aspect."""
    scale = size / max(height, width)
    return max(1, round(width * scale)), max(1, round(height * scale))


def content_box(height: int, width: int, cfg: PreprocessConfig) -> tuple[int, int, int, int]:
    """Where an image of this size lies in the model's S x S input (top, left, height, width):
    all of it when stretched, the centred fitted image when padded."""
    size = cfg.image_size
    if cfg.resize == "stretch":
        return 0, 0, size, size
    fitted_width, fitted_height = fitted_size(height, width, size)
    return (size - fitted_height) // 2, (size - fitted_width) // 2, fitted_height, fitted_width


def display_8bit(pixels: np.ndarray) -> np.ndarray:
    """Decoded pixels as 8 bits for a person to look at: 8-bit images as they are, 16-bit ones
    windowed to their 0.5-99.5 percentiles (a CT's or X-ray's raw range shows nearly black)."""
    return _to_8bit(pixels, stretch=pixels.dtype != np.uint8)


def _pad(image: np.ndarray, size: int) -> np.ndarray:
    """Centre on a black S x S canvas (no-op when already square)."""
    pad_y, pad_x = size - image.shape[0], size - image.shape[1]
    if pad_x == pad_y == 0:
        return image
    top, left = pad_y // 2, pad_x // 2
    return cv2.copyMakeBorder(image, top, pad_y - top, left, pad_x - left, cv2.BORDER_CONSTANT, value=0)


def _denoise(image: np.ndarray, strength: float) -> np.ndarray:
    if image.ndim == 2:
        return cv2.fastNlMeansDenoising(image, None, strength)
    return cv2.fastNlMeansDenoisingColored(image, None, strength, strength)


def _clahe(image: np.ndarray, clip_limit: float, tile_grid: int) -> np.ndarray:
    clahe = _clahe_operator(clip_limit, tile_grid)
    if image.ndim == 2:
        return clahe.apply(image)
    # Colour: equalise lightness only, so hues (e.g. stains) keep their meaning.
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    lab[:, :, 0] = clahe.apply(lab[:, :, 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
