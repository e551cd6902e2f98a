"""Readers for each `data.source` scheme.

A reader lists the labels the source declares (a class folder without images included) and
yields tasks, each turning one entry (a file, an array) into images or rejections. Ingest runs
the tasks on all cores. Nothing is ever dropped without a rejection saying why.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from medcls import medmnist
from medcls.config import SPLITS, DataConfig, DataSource
from medcls.errors import ConfigError, DataError
from medcls.imaging import (
    ImageLimits,
    ImageStats,
    UnreadableImage,
    describe_image,
    encode_png,
    image_id,
    load_image,
    printable_path,
)
from medcls.parallel import ordered_map
from medcls.synthetic import CLASS_NAMES, generate_images


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
    details: dict = field(default_factory=dict)  # facts for dataset.json (e.g. a file's MD5)


def open_source(cfg: DataConfig, seed: int, base_dir: Path) -> Source:
    """The source `cfg.source` names, ready to be read."""
    source = cfg.parsed_source
    if source.scheme == "synthetic":
        return Source(CLASS_NAMES, _synthetic_tasks(cfg, seed))
    if source.scheme == "medmnist":
        return _medmnist(source, cfg, base_dir)
    location = _existing(source, base_dir)
    if source.scheme == "folder":
        return _folder(location, cfg)
    if source.scheme == "csv":
        return _csv(location, cfg)
    return _dicom(location, cfg)


def image_item(
    origin: str,
    label: str,
    patient: str | None,
    split: str | None,
    pixels: np.ndarray,
    encoded: bytes | None = None,
    suffix: str = ".png",
) -> SourceImage:
    """An image with its content id and statistics; arrays without a file are stored as PNG."""
    stored = encoded if encoded is not None else encode_png(pixels)
    return SourceImage(origin, label, patient, split, image_id(pixels), describe_image(pixels), stored, suffix)


def _existing(source: DataSource, base_dir: Path) -> Path:
    path = source.path(base_dir)
    if not path.exists():
        raise ConfigError(f"data.source: {source.scheme}:{source.location}: {path} does not exist")
    return path


def _synthetic_tasks(cfg: DataConfig, seed: int) -> Iterator[SourceTask]:
    for number, image in enumerate(generate_images(cfg.synthetic, seed)):
        yield partial(_array_item, f"synthetic:{number}", image.label, image.patient, None, image.pixels)


def _array_item(
    origin: str, label: str, patient: str | None, split: str | None, pixels: np.ndarray
) -> list[SourceItem]:
    return [image_item(origin, label, patient, split, pixels)]


def _medmnist(source: DataSource, cfg: DataConfig, base_dir: Path) -> Source:
    if medmnist.is_dataset_name(source.location):
        path = medmnist.fetch(source.location, base_dir / "data" / "downloads", cfg.download_mirror)
    else:
        path = _existing(source, base_dir)
    official = medmnist.DATASETS.get(path.stem)
    names = cfg.class_names or (list(official.class_names) if official else None)
    md5 = medmnist.file_md5(path)
    details = {"file_md5": md5, "official_file": official is not None and md5 == official.md5}

    def tasks() -> Iterator[SourceTask]:
        for entry in medmnist.read_npz(path):
            label = _class_name(entry.label, names, path)
            yield partial(
                _array_item, f"{path.name}:{entry.split}[{entry.index}]", label, None, entry.split, entry.pixels
            )

    return Source(tuple(names or ()), tasks(), details)


def _class_name(label: int, names: list[str] | None, path: Path) -> str:
    if names is None:
        return str(label)
    if not 0 <= label < len(names):
        raise ConfigError(f"data.class_names: {path} has label {label}, beyond the {len(names)} names")
    return names[label]


@dataclass(frozen=True)
class _Entry:
    """One file to read, with what the source says about it."""

    path: Path
    origin: str
    label: str | None
    patient: str | None = None
    split: str | None = None
    rejection: str | None = None  # known unusable before reading


def _file_tasks(entries: list[_Entry], cfg: DataConfig) -> Iterator[SourceTask]:
    limits = ImageLimits(cfg.min_image_size, cfg.max_image_pixels)
    pattern = re.compile(cfg.patient_pattern)
    return (partial(_read_entry, entry, limits, cfg, pattern) for entry in entries)


def _read_entry(entry: _Entry, limits: ImageLimits, cfg: DataConfig, pattern: re.Pattern[str]) -> list[SourceItem]:
    if entry.rejection:
        return [Rejected(entry.origin, entry.rejection)]
    try:
        images = load_image(entry.path, limits, cfg.dicom)
    except UnreadableImage as exc:
        return [Rejected(entry.origin, str(exc))]
    items: list[SourceItem] = []
    for image in images:
        origin = entry.origin if image.frame is None else f"{entry.origin}#frame{image.frame}"
        # The patient as the source names it, else as the DICOM header does, else the file name.
        patient = entry.patient or image.patient or _patient_from_name(entry.path.name, pattern)
        items.append(image_item(origin, entry.label, patient, entry.split, image.pixels, image.encoded, image.suffix))
    return items


def _patient_from_name(name: str, pattern: re.Pattern[str]) -> str | None:
    match = pattern.search(name)
    if match is None:
        return None
    return match.group(1) if match.groups() else match.group(0)


def _folder(root: Path, cfg: DataConfig) -> Source:
    """`root/<class>/**` or `root/<split>/<class>/**`."""
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    split_dirs = [root / split for split in SPLITS if (root / split).is_dir()]
    entries, labels = [], set()
    for split_dir in split_dirs or [root]:
        split = split_dir.name if split_dirs else None
        for path in sorted(split_dir.iterdir()):
            if not path.is_dir():
                entries.append(
                    _Entry(path, printable_path(path.relative_to(root)), None, rejection="not in a class folder")
                )
            elif path.name.startswith("."):
                entries += _files_under(path, root, None, rejection=f"in a hidden folder ({path.name})")
            else:
                labels.add(path.name)
                entries += _files_under(path, root, path.name, split)
    for path in sorted(set(root.iterdir()) - set(split_dirs)) if split_dirs else []:
        entries += _files_under(path, root, None, rejection="outside the train/val/test folders")
    if not labels:
        raise DataError(f"{root}: no class folders found (expected <class>/ or <split>/<class>/ folders)")
    return Source(tuple(sorted(labels)), _file_tasks(entries, cfg))


def _files_under(folder: Path, root: Path, label: str | None, split=None, rejection=None) -> list[_Entry]:
    """Every file in `folder` (or `folder` itself if it is a file); broken links too: reported."""
    files = sorted(path for path in folder.rglob("*") if not path.is_dir()) if folder.is_dir() else [folder]
    return [
        _Entry(path, printable_path(path.relative_to(root)), label, split=split, rejection=rejection) for path in files
    ]


def _csv(path: Path, cfg: DataConfig) -> Source:
    """A manifest `path,label[,patient_id,split]`; paths are relative to the manifest's folder."""
    return _csv_rows(_read_table(path, required={"path", "label"}), path.parent.resolve(), cfg)


def _csv_rows(table: pd.DataFrame, root: Path, cfg: DataConfig, origin_prefix: str = "") -> Source:
    entries = [_csv_entry(row, root, origin_prefix) for row in table.to_dict("records")]
    labels = sorted({row["label"] for row in table.to_dict("records") if row["label"]})
    return Source(tuple(labels), _file_tasks(entries, cfg))


REVIEWED_ORIGIN = "reviewed/"  # origins of doctor-reviewed images from the labelled pool
AUTO_ORIGIN = "auto-labelled/"  # origins of the pool's auto-labelled images


def reviewed_pool(pool_dir: Path, cfg: DataConfig) -> Source | None:
    """The labelled pool's images that may join training: every doctor-reviewed one, and auto
    labels at or above `data.auto_label_min_confidence` (none when it is null)."""
    path = pool_dir / "labels.csv"
    if not path.is_file():
        return None
    table = _read_table(path, required={"path", "label", "label_source", "confidence"})
    table = table.drop(columns=["patient_id"], errors="ignore")  # each image is its own patient
    threshold = cfg.auto_label_min_confidence
    confident = False if threshold is None else pd.to_numeric(table["confidence"], errors="coerce") >= threshold
    doctor, auto = table[table["label_source"] == "doctor"], table[(table["label_source"] == "auto") & confident]
    if doctor.empty and auto.empty:
        return None
    root = pool_dir.resolve()
    return with_pool(_csv_rows(doctor, root, cfg, REVIEWED_ORIGIN), _csv_rows(auto, root, cfg, AUTO_ORIGIN))


def with_pool(source: Source, pool: Source | None) -> Source:
    """The source followed by the labelled pool's images."""
    if pool is None:
        return source
    labels = tuple(dict.fromkeys([*source.labels, *pool.labels]))
    return Source(labels, itertools.chain(source.tasks, pool.tasks), source.details)


def _csv_entry(row: dict, root: Path, origin_prefix: str = "") -> _Entry:
    origin, label = origin_prefix + row["path"], row["label"] or None
    target = (root / row["path"]).resolve()
    split = row.get("split") or None
    rejection = None
    if not target.is_relative_to(root):
        rejection = "path escapes the manifest's folder (refused)"
    elif label is None:
        rejection = "no label"
    elif split is not None and split not in SPLITS:
        rejection = f"unknown split {split!r} (expected {', '.join(SPLITS)})"
    return _Entry(target, origin, label, row.get("patient_id") or None, split, rejection)


def _dicom(root: Path, cfg: DataConfig) -> Source:
    """A folder of DICOM files labelled by a CSV keyed by `SOPInstanceUID` or `file`."""
    labels_path = root / cfg.dicom.labels
    if not labels_path.is_file():
        raise ConfigError(f"data.dicom.labels: {labels_path} not found (a CSV with label and SOPInstanceUID or file)")
    table = _read_table(labels_path, required={"label"})
    key = next((column for column in ("SOPInstanceUID", "file") if column in table.columns), None)
    if key is None:
        raise DataError(f"{labels_path}: needs a SOPInstanceUID or a file column to find the images")
    rows = {row[key]: row for row in table.to_dict("records")}
    files = sorted(p for p in root.rglob("*") if not p.is_dir() and p != labels_path and not p.name.startswith("."))
    if key == "SOPInstanceUID":
        keys = list(ordered_map(_instance_uid, files))
    else:
        keys = [path.relative_to(root).as_posix() for path in files]
    entries = [_dicom_entry(path, printable_path(path.relative_to(root)), rows.get(k), cfg.dicom.labels)
               for path, k in zip(files, keys, strict=True)]  # fmt: skip
    unmatched = sorted(set(rows) - set(keys))
    entries += [_Entry(labels_path, f"{cfg.dicom.labels}:{k}", None, rejection=f"in {cfg.dicom.labels}, not found")
                for k in unmatched]  # fmt: skip
    labels = sorted({row["label"] for row in rows.values() if row["label"]})
    return Source(tuple(labels), _file_tasks(entries, cfg))


def _dicom_entry(path: Path, origin: str, row: dict | None, labels_name: str) -> _Entry:
    if row is None:
        return _Entry(path, origin, None, rejection=f"no label in {labels_name}")
    label = row["label"] or None
    return _Entry(path, origin, label, row.get("patient_id") or None, row.get("split") or None,
                  None if label else "no label")  # fmt: skip


def _instance_uid(path: Path) -> str | None:
    """SOPInstanceUID from the header alone (None if unreadable: reading the file will say why)."""
    import pydicom

    try:
        return str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
    except Exception:
        return None


def _read_table(path: Path, required: set[str]) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV: {exc}") from None
    missing = required - set(table.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(sorted(missing))} (has {', '.join(table.columns)})")
    return table
