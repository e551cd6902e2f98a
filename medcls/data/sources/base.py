"""What a source reader yields, and what the file-based readers (folder, csv, dicom, the labelled
pool) share: entries that become tasks, each turning one file into images or rejections."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from medcls.config import DataConfig, DataSource
from medcls.data.images import (
    ImageLimits,
    ImageStats,
    describe_image,
    encode_png,
    image_id,
    load_image,
    unreadable_reason,
)
from medcls.errors import ConfigError, DataError


@dataclass(frozen=True)
class SourceImage:
    origin: str  # where it came from: a path relative to the source, or file:split[index]
    label: str
    patient: str | None  # as the source names it; None when unknown
    split: str | None  # the split the source gives, if any
    image_id: str
    stats: ImageStats
    encoded: bytes  # what ingest stores: the original file where it is kept as is, else PNG
    suffix: str
    patient_from: str | None = None  # record (a CSV column), dicom (its header), file name, generated
    acquisition: dict[str, str] = field(default_factory=dict)  # DICOM only (LoadedImage.acquisition)


@dataclass(frozen=True)
class Rejected:
    origin: str
    reason: str


SourceItem = SourceImage | Rejected
SourceTask = Callable[[], list[SourceItem]]


@dataclass(frozen=True)
class Source:
    labels: tuple[str, ...]  # declared by the source, with or without images
    tasks: Iterator[SourceTask]
    size: int | None = None  # how many tasks, where known before reading (for progress)
    details: dict = field(default_factory=dict)  # facts for dataset.json (e.g. a file's MD5)


def image_item(
    origin: str,
    label: str,
    patient: str | None,
    split: str | None,
    pixels: np.ndarray,
    encoded: bytes | None = None,
    suffix: str = ".png",
    patient_from: str | None = None,
    acquisition: dict[str, str] | None = None,
) -> SourceImage:
    """An image with its content id and statistics; arrays without a file are stored as PNG."""
    stored = encoded if encoded is not None else encode_png(pixels)
    stats = describe_image(pixels)
    return SourceImage(origin, label, patient, split, image_id(pixels), stats, stored, suffix, patient_from,
                       acquisition or {})  # fmt: skip


def array_task(origin: str, label: str, patient: str | None, split: str | None, pixels: np.ndarray) -> SourceTask:
    """A task for an image that is already an array (generated, or from an .npz)."""
    return partial(_array_item, origin, label, patient, split, pixels)


def _array_item(
    origin: str, label: str, patient: str | None, split: str | None, pixels: np.ndarray
) -> list[SourceItem]:
    return [image_item(origin, label, patient, split, pixels, patient_from="generated")]


def existing_location(source: DataSource, base_dir: Path) -> Path:
    path = source.path(base_dir)
    if not path.exists():
        raise ConfigError(f"data.source: {source.scheme}:{source.location}: {path} does not exist")
    return path


@dataclass(frozen=True)
class FileEntry:
    """One file to read, with what the source says about it."""

    path: Path
    origin: str
    label: str | None
    patient: str | None = None
    split: str | None = None
    rejection: str | None = None  # known unusable before reading
    within: Path | None = None  # the folder the file must really be in (a link may not lead out)


def file_source(
    labels: list[str] | set[str], entries: Iterable[FileEntry], cfg: DataConfig, size: int | None = None
) -> Source:
    """A source reading `entries` as image files, under the size limits of `cfg`."""
    limits = ImageLimits.of(cfg)
    pattern = re.compile(cfg.patient_pattern)
    tasks = (partial(_read_entry, entry, limits, cfg, pattern) for entry in entries)
    return Source(tuple(sorted(labels)), tasks, size=len(entries) if isinstance(entries, list) else size)


def _read_entry(entry: FileEntry, limits: ImageLimits, cfg: DataConfig, pattern: re.Pattern[str]) -> list[SourceItem]:
    if entry.rejection:
        return [Rejected(entry.origin, entry.rejection)]
    if entry.within is not None and not _inside(os.path.realpath(entry.path), entry.within):
        return [Rejected(entry.origin, "a link that leads out of the source's folder (refused)")]
    try:
        return _items(entry, load_image(entry.path, limits, cfg.dicom), pattern)
    except Exception as exc:  # one file must never stop ingest: it is quarantined with the reason
        return [Rejected(entry.origin, unreadable_reason(exc))]


def _items(entry: FileEntry, images: list, pattern: re.Pattern[str]) -> list[SourceItem]:
    items: list[SourceItem] = []
    for image in images:
        origin = entry.origin if image.frame is None else f"{entry.origin}#frame{image.frame}"
        # The patient as the source names it, else as the DICOM header does, else the file name.
        patient, patient_from = next(
            ((name, where) for name, where in ((entry.patient, "record"), (image.patient, "dicom"),
             (_patient_from_name(entry.path.name, pattern), "file name")) if name),
            (None, None),
        )  # fmt: skip
        items.append(image_item(origin, entry.label, patient, entry.split, image.pixels, image.encoded, image.suffix,
                                patient_from, image.acquisition))  # fmt: skip
    return items


def _inside(path: str, folder: Path) -> bool:
    root = os.path.realpath(folder)
    return path == root or path.startswith(root + os.sep)


def _patient_from_name(name: str, pattern: re.Pattern[str]) -> str | None:
    match = pattern.search(name)
    if match is None:
        return None
    return match.group(1) if match.groups() else match.group(0)


def read_table(path: Path, required: set[str]) -> pd.DataFrame:
    """A CSV a user wrote (labels, a manifest), every cell as text; missing columns are an error."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV: {exc}") from None
    missing = required - set(table.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(sorted(missing))} (has {', '.join(table.columns)})")
    return table
