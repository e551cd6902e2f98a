"""Readers for each `data.source` scheme. Each yields images or rejections, never drops a file."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medcls.config import SPLITS, DataConfig, DataSource
from medcls.errors import ConfigError, DataError
from medcls.imaging import UnreadableImage, is_image_file, read_image
from medcls.synthetic import generate_images


@dataclass(frozen=True)
class SourceImage:
    origin: str  # where the image came from, for reports (a path, or file:split[index])
    label: str
    patient: str | None  # as the source names it; None when unknown
    split: str | None  # the split the source gives, if any
    pixels: np.ndarray
    encoded: bytes | None = None  # the original file, kept byte for byte; None: store as PNG
    suffix: str = ".png"


@dataclass(frozen=True)
class Rejected:
    origin: str
    reason: str


SourceItem = SourceImage | Rejected


def read_source(cfg: DataConfig, seed: int, base_dir: Path) -> Iterator[SourceItem]:
    """Every image of `data.source`, with its label and, where known, patient and split."""
    source = cfg.parsed_source
    if source.scheme == "synthetic":
        return _synthetic(cfg, seed)
    location = _existing(source, base_dir)
    if source.scheme == "medmnist":
        return _medmnist(location, cfg.class_names)
    return _folder(location, re.compile(cfg.patient_pattern))


def _existing(source: DataSource, base_dir: Path) -> Path:
    path = source.path(base_dir)
    if not path.exists():
        raise ConfigError(f"data.source: {source.scheme}:{source.location}: {path} does not exist")
    return path


def _synthetic(cfg: DataConfig, seed: int) -> Iterator[SourceItem]:
    for number, image in enumerate(generate_images(cfg.synthetic, seed)):
        yield SourceImage(f"synthetic:{number}", image.label, image.patient, None, image.pixels)


def _medmnist(path: Path, class_names: list[str] | None) -> Iterator[SourceItem]:
    """The official MedMNIST `.npz`: `{split}_images` and `{split}_labels` per split."""
    try:
        archive = np.load(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz file: {exc}") from None
    with archive:
        for split in SPLITS:
            if f"{split}_images" not in archive:
                continue
            images, labels = archive[f"{split}_images"], archive[f"{split}_labels"]
            if labels.ndim == 2 and labels.shape[1] != 1:
                raise DataError(f"{path}: multi-label data ({labels.shape[1]} labels) is not supported")
            for index, (pixels, label) in enumerate(zip(images, labels.reshape(-1), strict=True)):
                name = _class_name(int(label), class_names, path)
                yield SourceImage(f"{path.name}:{split}[{index}]", name, None, split, pixels)


def _class_name(label: int, class_names: list[str] | None, path: Path) -> str:
    if class_names is None:
        return str(label)
    if not 0 <= label < len(class_names):
        raise ConfigError(f"data.class_names: {path} has label {label}, beyond the {len(class_names)} names")
    return class_names[label]


def _folder(root: Path, patient_pattern: re.Pattern[str]) -> Iterator[SourceItem]:
    """`root/<class>/*` or `root/<split>/<class>/*`; files are decoded on a thread pool."""
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    tasks = list(_folder_files(root))
    if not tasks:
        raise DataError(f"{root}: no class folders with files found")
    with ThreadPoolExecutor() as pool:
        yield from pool.map(lambda task: _read_file(*task, patient_pattern), tasks)


def _folder_files(root: Path) -> Iterable[tuple[Path, str, str | None]]:
    split_dirs = [root / split for split in SPLITS if (root / split).is_dir()]
    for split_dir in split_dirs or [root]:
        split = split_dir.name if split_dirs else None
        for class_dir in sorted(path for path in split_dir.iterdir() if path.is_dir()):
            for path in sorted(class_dir.rglob("*")):
                if path.is_file():
                    yield path, class_dir.name, split


def _read_file(path: Path, label: str, split: str | None, pattern: re.Pattern[str]) -> SourceItem:
    if not is_image_file(path):
        return Rejected(str(path), f"not an image file type ({path.suffix or 'no extension'})")
    try:
        data, pixels = read_image(path)
    except UnreadableImage as exc:
        return Rejected(str(path), str(exc))
    match = pattern.search(path.name)
    patient = (match.group(1) if match.groups() else match.group(0)) if match else None
    return SourceImage(str(path), label, patient, split, pixels, data, path.suffix.lower())
