"""Ingest stage: copy every usable image once into `data/raw/`, identified by pixel content.

Writes `images/<id[:2]>/<image_id><suffix>`, `manifest.parquet` (one row per image), `quarantine.csv`
(unusable files and why), `duplicates.csv` (identical images that were kept once) and
`dataset.json` (class names and counts). The source is only read, never changed.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from medcls.catalog import CALIBRATION, RawData, image_file
from medcls.config import DataConfig
from medcls.data.images import ACQUISITION_ATTRIBUTES
from medcls.data.patients import SALT_VARIABLE, check_salt, has_secret, patient_key
from medcls.data.sources import (
    AUTO_ORIGIN,
    REVIEWED_ORIGIN,
    Rejected,
    Source,
    SourceTask,
    open_source,
    reviewed_pool,
    with_pool,
)
from medcls.data.splits import split_by_patient
from medcls.errors import DataError
from medcls.support.files import staged_dir, write_json, write_table
from medcls.support.parallel import ordered_map
from medcls.support.progress import track

QUARANTINE_COLUMNS = ["origin", "reason"]


@dataclass(frozen=True)
class IngestResult:
    raw_dir: Path
    images: int
    quarantined: int
    duplicates: int
    class_names: tuple[str, ...]


def ingest_data(
    cfg: DataConfig, out_dir: Path, *, seed: int, base_dir: Path, reviewed_dir: Path | None = None
) -> IngestResult:
    """Read `cfg.source` (and the labelled pool in `reviewed_dir`, see medcls.review), store each
    distinct image once, split by patient, write the manifest."""
    source = open_source(cfg, seed, base_dir)
    if reviewed_dir is not None:
        source = with_pool(source, reviewed_pool(reviewed_dir, cfg))
    with staged_dir(out_dir) as staging:
        raw = RawData(staging)
        rows, rejected = _store_images(source, raw, cfg.class_names)
        if not rows:
            raise DataError(f"{cfg.source}: no usable images ({len(rejected)} files rejected)")
        check_salt({row.pop("patient_from") for row in rows}, cfg, cfg.source)
        manifest, duplicates, conflicts = _resolve_duplicates(pd.DataFrame(rows), raw)
        quarantine = pd.DataFrame([asdict(r) for r in rejected] + conflicts, columns=QUARANTINE_COLUMNS)
        manifest["split"] = _assign_splits(manifest, cfg)
        manifest = manifest.drop(columns="given_split")
        class_names = tuple(cfg.class_names or _ordered_labels(set(source.labels) | set(manifest["label"])))
        write_table(raw.manifest, manifest)
        write_table(raw.quarantine, quarantine)
        write_table(raw.duplicates, duplicates)
        summary = _summary(cfg, manifest, class_names, len(quarantine), len(duplicates))
        write_json(raw.dataset, {**summary, **source.details})
    return IngestResult(out_dir, len(manifest), len(quarantine), len(duplicates), class_names)


def _store_images(source: Source, raw: RawData, class_names: list[str] | None) -> tuple[list[dict], list[Rejected]]:
    """Read the source in parallel; each worker stores its images (each distinct file once)."""
    raw.images.mkdir()
    rows: list[dict] = []
    rejected: list[Rejected] = []
    store = partial(_run_and_store, raw=raw, class_names=class_names)
    for results in track(ordered_map(store, source.tasks), "ingest", source.size, unit="files"):
        for result in results:
            (rejected if isinstance(result, Rejected) else rows).append(result)
    return rows, rejected


def _run_and_store(task: SourceTask, raw: RawData, class_names: list[str] | None) -> list[dict | Rejected]:
    """Run a source task; manifest rows for its usable images (written to `raw.images`),
    rejections for the rest."""
    results: list[dict | Rejected] = []
    for item in task():
        reason = item.reason if isinstance(item, Rejected) else _rejection(item, class_names)
        if reason:
            results.append(Rejected(item.origin, reason))
            continue
        file = image_file(item.image_id, item.suffix)
        _write_once(raw.image(file), item.encoded)
        patient = item.patient if item.patient is not None else f"image:{item.image_id}"  # its own patient
        results.append(
            {
                "image_id": item.image_id,
                "file": file,
                "origin": item.origin,
                "label": item.label,
                "patient_id": patient_key(patient),
                "patient_from": item.patient_from if item.patient is not None else "generated",
                "given_split": item.split,
                **vars(item.stats),
                **{name: item.acquisition.get(name, "") for name in ACQUISITION_ATTRIBUTES},
            }
        )
    return results


def _write_once(path: Path, data: bytes) -> None:
    """Create `path` with `data`; if a worker already stored the same image there, keep that."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        try:
            handle = os.open(path, flags, 0o644)
        except FileNotFoundError:  # the first image of its subfolder
            path.parent.mkdir(exist_ok=True)
            handle = os.open(path, flags, 0o644)
    except FileExistsError:
        return
    with os.fdopen(handle, "wb") as stream:
        stream.write(data)


def _rejection(item, class_names: list[str] | None) -> str | None:
    if class_names is not None and item.label not in class_names:
        return f"label {item.label!r} is not one of data.class_names"
    if item.stats.std == 0:
        return f"blank image (every pixel is {item.stats.min:.0f})"
    return None


def _resolve_duplicates(manifest: pd.DataFrame, raw: RawData) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """Identical pixels: labels from the labelled pool settle a conflict (_apply_label_precedence);
    otherwise, under two labels, quarantine all copies (the truth is unknown); in the same split
    and label, keep the first. Copies across splits stay for validation to report."""
    written = set(manifest["file"])
    manifest, relabelled = _apply_label_precedence(manifest)
    labels_per_image = manifest.groupby("image_id")["label"].transform("nunique")
    conflicting = manifest[labels_per_image > 1]
    conflicts = [
        {"origin": row.origin, "reason": f"same pixels as other files labelled {sorted(set(group.label))}"}
        for _, group in conflicting.groupby("image_id")
        for row in group.itertuples()
    ]
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
    duplicates = pd.concat([relabelled, duplicates], ignore_index=True)
    manifest = manifest[~repeated].reset_index(drop=True)
    for unused in written - set(manifest["file"]):
        raw.image(unused).unlink()  # conflicting pixels, or a copy of a kept image in another format
    return manifest, duplicates, conflicts


def _apply_label_precedence(manifest: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Identical pixels under different labels: a doctor's review beats the source's label, which
    beats an auto label. The losing rows are dropped and listed with the row that was kept."""
    origin = manifest["origin"]
    rank = pd.Series(
        np.select([origin.str.startswith(REVIEWED_ORIGIN), origin.str.startswith(AUTO_ORIGIN)], [0, 2], 1),
        index=manifest.index,
    )
    best = manifest.assign(rank=rank).sort_values("rank", kind="stable").drop_duplicates("image_id")
    best = best.set_index("image_id")
    ids = manifest["image_id"]
    overridden = (rank > ids.map(best["rank"])) & (manifest["label"] != ids.map(best["label"]))
    relabelled = pd.DataFrame(
        {"origin": origin[overridden], "kept": ids[overridden].map(best["origin"]), "image_id": ids[overridden]}
    )
    return manifest[~overridden], relabelled


def _assign_splits(manifest: pd.DataFrame, cfg: DataConfig) -> pd.Series:
    """Keep the source's splits; carve `val` (when the source has none) and `calibration` out of
    `train` by patient; split everything by patient when the source gives no split at all. A
    patient's split never depends on the other patients (medcls.data.splits)."""
    from_pool = manifest["origin"].str.startswith((REVIEWED_ORIGIN, AUTO_ORIGIN))
    given = manifest["given_split"]
    calibration = {CALIBRATION: cfg.calibration_fraction}
    if cfg.split == "patient" or given[~from_pool].isna().all():
        fractions = {"test": cfg.test_fraction, "val": cfg.val_fraction} | calibration
        return split_by_patient(manifest["patient_id"], fractions)
    given = given.where(given.notna() | ~from_pool, "train")  # reviewed images join train
    if given.isna().any():
        raise DataError(f"{cfg.source}: some images have a split and others none")
    train = given == "train"
    carve = calibration if (given == "val").any() else {"val": cfg.val_fraction} | calibration
    carved = split_by_patient(manifest["patient_id"][train], carve)
    return carved.combine_first(given).rename("split")


def _ordered_labels(labels: set[str]) -> list[str]:
    """Numeric labels in numeric order (MedMNIST without names), others alphabetically."""
    return sorted(labels, key=lambda name: (0, int(name), "") if name.isdigit() else (1, 0, name))


def _summary(cfg: DataConfig, manifest: pd.DataFrame, class_names: tuple[str, ...], quarantined: int, duplicates: int):
    counts = manifest.groupby(["split", "label"]).size()
    salted = has_secret()
    return {
        "source": cfg.source,
        "class_names": list(class_names),
        "images": len(manifest),
        "patients": int(manifest["patient_id"].nunique()),
        "counts": {split: {label: int(n) for label, n in counts[split].items()} for split in counts.index.levels[0]},
        "quarantined": quarantined,
        "duplicates": duplicates,
        "patient_salt": SALT_VARIABLE if salted else "default",
        "dicom": cfg.dicom.model_dump(mode="json"),
    }
