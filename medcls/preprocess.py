"""Preprocess stage: OpenCV turns every ingested image into a fixed-size uint8 array.

`prepare_image` is the one preprocessing function: training data and scored images both go
through it, with the contract saved beside the model, so there is no train/serve skew.
Scaling to [0, 1] and standardisation happen inside the model.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from medcls.config import SPLITS, PreprocessConfig
from medcls.errors import DataError
from medcls.files import read_json, staged_dir, write_json
from medcls.imaging import read_image
from medcls.ingest import DATASET, load_manifest

CONTRACT = "contract.json"


@dataclass(frozen=True)
class PreprocessResult:
    processed_dir: Path
    counts: dict[str, int]
    contract: dict


def preprocess_data(cfg: PreprocessConfig, raw_dir: Path, out_dir: Path) -> PreprocessResult:
    """Write `{split}.npz` (x: N x S x S x C uint8, y: class index, image_id) and the contract."""
    manifest = load_manifest(raw_dir)
    class_names = read_json(raw_dir / DATASET)["class_names"]
    contract = {"class_names": class_names, "preprocess": resolve_channels(cfg, manifest["channels"]).model_dump()}
    resolved = PreprocessConfig.model_validate(contract["preprocess"])
    class_index = {name: index for index, name in enumerate(class_names)}
    counts = {}
    with staged_dir(out_dir) as staging:
        for split in SPLITS:
            rows = manifest[manifest["split"] == split]
            images = prepare_files([raw_dir / file for file in rows["file"]], resolved)
            labels = rows["label"].map(class_index).to_numpy(np.int32)
            np.savez(staging / f"{split}.npz", x=images, y=labels, image_id=rows["image_id"].to_numpy(str))
            counts[split] = len(rows)
        write_json(staging / CONTRACT, contract)
    return PreprocessResult(out_dir, counts, contract)


def resolve_channels(cfg: PreprocessConfig, channels: object) -> PreprocessConfig:
    """`channels: auto` becomes 3 if any image is in colour, else 1."""
    if cfg.channels != "auto":
        return cfg
    return cfg.model_copy(update={"channels": 3 if 3 in set(channels) else 1})


def prepare_files(paths: list[Path], cfg: PreprocessConfig) -> np.ndarray:
    """Read and prepare images on a thread pool (OpenCV releases the GIL)."""
    workers = cfg.workers or os.cpu_count() or 1
    with ThreadPoolExecutor(workers) as pool:
        images = list(pool.map(lambda path: prepare_image(read_image(path)[1], cfg), paths))
    channels = int(cfg.channels)
    return np.stack(images) if images else np.zeros((0, cfg.image_size, cfg.image_size, channels), np.uint8)


def prepare_image(pixels: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Grayscale/RGB, 8/16-bit pixels -> S x S x C uint8: intensity window, colour, size,
    denoise, contrast (CLAHE)."""
    if cfg.channels == "auto":
        raise ValueError("prepare_image needs resolved channels (1 or 3), see resolve_channels")
    image = _to_8bit(pixels, cfg.normalize == "percentile")
    image = _convert_channels(image, int(cfg.channels))
    image = _resize(image, cfg.image_size, cfg.resize)
    if cfg.denoise:
        image = _denoise(image, cfg.denoise_strength)
    if cfg.clahe:
        image = _clahe(image, cfg.clahe_clip_limit, cfg.clahe_tile_grid)
    return image.reshape(cfg.image_size, cfg.image_size, -1)


def load_split(processed_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The arrays of one split: images, class indices, image ids."""
    path = processed_dir / f"{split}.npz"
    if not path.exists():
        raise DataError(f"{path}: missing; run `medcls preprocess` first")
    with np.load(path) as arrays:
        return arrays["x"], arrays["y"], arrays["image_id"]


def load_contract(processed_dir: Path) -> dict:
    return read_json(processed_dir / CONTRACT)


def _to_8bit(pixels: np.ndarray, stretch: bool) -> np.ndarray:
    """Map the 0.5-99.5 percentile range to 0-255 (device-independent exposure), or just scale
    the bit depth down."""
    if not stretch:
        return (pixels >> 8).astype(np.uint8) if pixels.dtype == np.uint16 else pixels
    histogram = np.bincount(pixels.reshape(-1))
    cumulative = np.cumsum(histogram) / pixels.size
    low, high = np.searchsorted(cumulative, [0.005, 0.995])
    if high <= low:  # constant image: nothing to stretch
        return np.zeros(pixels.shape, np.uint8)
    scaled = (pixels.astype(np.float32) - low) * (255.0 / (high - low))
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


def _convert_channels(image: np.ndarray, channels: int) -> np.ndarray:
    if channels == 1 and image.ndim == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if channels == 3 and image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return image


def _resize(image: np.ndarray, size: int, mode: str) -> np.ndarray:
    """`stretch` to S x S, or `pad`: scale the longer side to S and pad the shorter with black."""
    height, width = image.shape[:2]
    if mode == "stretch":
        target = (size, size)
    else:
        scale = size / max(height, width)
        target = (max(1, round(width * scale)), max(1, round(height * scale)))
    shrinking = target[0] * target[1] < width * height
    resized = cv2.resize(image, target, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    pad_y, pad_x = size - target[1], size - target[0]
    if pad_x == pad_y == 0:
        return resized
    return cv2.copyMakeBorder(
        resized, pad_y // 2, pad_y - pad_y // 2, pad_x // 2, pad_x - pad_x // 2, cv2.BORDER_CONSTANT, value=0
    )


def _denoise(image: np.ndarray, strength: float) -> np.ndarray:
    if image.ndim == 2:
        return cv2.fastNlMeansDenoising(image, None, strength)
    return cv2.fastNlMeansDenoisingColored(image, None, strength, strength)


def _clahe(image: np.ndarray, clip_limit: float, tile_grid: int) -> np.ndarray:
    clahe = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tile_grid, tile_grid))
    if image.ndim == 2:
        return clahe.apply(image)
    # Colour: equalise lightness only, so hues (e.g. stains) keep their meaning.
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    lab[:, :, 0] = clahe.apply(lab[:, :, 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
