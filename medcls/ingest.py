"""Ingest stage: copy every usable image once into `data/raw/`, identified by pixel content.

Writes `images/<image_id><suffix>`, `manifest.parquet` (one row per image), `quarantine.csv`
(unusable files and why), `duplicates.csv` (identical images that were kept once) and
`dataset.json` (class names and counts). The source is only read, never changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from medcls.config import DataConfig
from medcls.errors import DataError
from medcls.files import staged_dir, write_json, write_table
from medcls.imaging import describe_image, encode_png, image_id
from medcls.sources import Rejected, SourceItem, read_source
from medcls.splits import split_by_patient

MANIFEST = "manifest.parquet"
DATASET = "dataset.json"
QUARANTINE_COLUMNS = ["origin", "reason"]


@dataclass(frozen=True)
class IngestResult:
    raw_dir: Path
    images: int
    quarantined: int
    duplicates: int
    class_names: tuple[str, ...]


def ingest_data(cfg: DataConfig, out_dir: Path, *, seed: int, base_dir: Path) -> IngestResult:
    """Read `cfg.source`, store each distinct image once, split by patient, write the manifest."""
    items = read_source(cfg, seed, base_dir)
    with staged_dir(out_dir) as staging:
        rows, rejected = _store_images(items, staging)
        if not rows:
            raise DataError(f"{cfg.source}: no usable images ({len(rejected)} files rejected)")
        manifest, duplicates, conflicts = _resolve_duplicates(pd.DataFrame(rows), staging)
        quarantine = pd.DataFrame([asdict(r) for r in rejected] + conflicts, columns=QUARANTINE_COLUMNS)
        manifest["split"] = _assign_splits(manifest, cfg, seed)
        manifest = manifest.drop(columns="given_split")
        class_names = _class_names(manifest["label"], cfg.class_names)
        write_table(staging / MANIFEST, manifest)
        write_table(staging / "quarantine.csv", quarantine)
        write_table(staging / "duplicates.csv", duplicates)
        write_json(staging / DATASET, _summary(cfg.source, manifest, class_names, quarantine, duplicates))
    return IngestResult(out_dir, len(manifest), len(quarantine), len(duplicates), class_names)


def load_manifest(raw_dir: Path) -> pd.DataFrame:
    path = raw_dir / MANIFEST
    if not path.exists():
        raise DataError(f"{path}: no manifest; run `medcls ingest` first")
    return pd.read_parquet(path)


def patient_key(name: str) -> str:
    """Pseudonymous patient id: a hash, so no source identifier is stored or logged."""
    return hashlib.sha256(f"medcls-patient:{name}".encode()).hexdigest()[:16]


def _store_images(items: Iterable[SourceItem], staging: Path) -> tuple[list[dict], list[Rejected]]:
    rows: list[dict] = []
    rejected: list[Rejected] = []
    stored: dict[str, str] = {}  # image id -> file, so identical pixels are stored once
    (staging / "images").mkdir()
    for item in items:
        if isinstance(item, Rejected):
            rejected.append(item)
            continue
        digest = image_id(item.pixels)
        if digest not in stored:
            stored[digest] = f"images/{digest}{item.suffix}"
            data = item.encoded if item.encoded is not None else encode_png(item.pixels)
            (staging / stored[digest]).write_bytes(data)
        patient = item.patient if item.patient is not None else f"image:{digest}"
        rows.append(
            {
                "image_id": digest,
                "file": stored[digest],
                "origin": item.origin,
                "label": item.label,
                "patient_id": patient_key(patient),
                "given_split": item.split,
                **asdict(describe_image(item.pixels)),
            }
        )
    return rows, rejected


def _resolve_duplicates(manifest: pd.DataFrame, staging: Path) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """Identical pixels: under two labels, quarantine all copies (the truth is unknown); in the
    same split and label, keep the first. Copies across splits stay for validation to report."""
    labels_per_image = manifest.groupby("image_id")["label"].transform("nunique")
    conflicting = manifest[labels_per_image > 1]
    conflicts = [
        {"origin": row.origin, "reason": f"same pixels as other files labelled {sorted(set(group.label))}"}
        for _, group in conflicting.groupby("image_id")
        for row in group.itertuples()
    ]
    for file in conflicting["file"].unique():
        (staging / file).unlink()
    manifest = manifest[labels_per_image == 1]
    repeated = manifest.duplicated(["image_id", "given_split"], keep="first")
    first_origin = manifest.groupby(["image_id", "given_split"], dropna=False)["origin"].transform("first")
    duplicates = pd.DataFrame(
        {
            "origin": manifest["origin"][repeated],
            "kept": first_origin[repeated],
            "image_id": manifest["image_id"][repeated],
        }
    )
    return manifest[~repeated].reset_index(drop=True), duplicates, conflicts


def _assign_splits(manifest: pd.DataFrame, cfg: DataConfig, seed: int) -> pd.Series:
    """Keep the source's splits; carve `val` out of `train` by patient when the source has none;
    split everything by patient when the source gives no split at all."""
    given = manifest["given_split"]
    if given.isna().all():
        fractions = {"test": cfg.test_fraction, "val": cfg.val_fraction}
        return split_by_patient(manifest["label"], manifest["patient_id"], fractions, seed)
    if given.isna().any():
        raise DataError(f"{cfg.source}: some images have a split and others none")
    if (given == "val").any():
        return given
    train = given == "train"
    carved = split_by_patient(manifest["label"][train], manifest["patient_id"][train], {"val": cfg.val_fraction}, seed)
    return carved.combine_first(given).rename("split")


def _class_names(labels: pd.Series, configured: list[str] | None) -> tuple[str, ...]:
    present = set(labels)
    if configured is not None:
        return tuple(name for name in configured if name in present)
    # Numeric labels in numeric order (MedMNIST without names), others alphabetically.
    return tuple(sorted(present, key=lambda name: (0, int(name), "") if name.isdigit() else (1, 0, name)))


def _summary(
    source: str,
    manifest: pd.DataFrame,
    class_names: tuple[str, ...],
    quarantine: pd.DataFrame,
    duplicates: pd.DataFrame,
) -> dict:
    counts = manifest.groupby(["split", "label"]).size()
    return {
        "source": source,
        "class_names": list(class_names),
        "images": len(manifest),
        "patients": int(manifest["patient_id"].nunique()),
        "counts": {split: {label: int(n) for label, n in counts[split].items()} for split in counts.index.levels[0]},
        "quarantined": len(quarantine),
        "duplicates": len(duplicates),
    }
