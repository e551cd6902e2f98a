"""The labelled pool `data/reviewed/`: doctors' labels come back as training data.

`medcls review import FILE` (the edited review_queue.csv, or a Label Studio JSON export) adds
each reviewed image to the pool (`labels.csv` + `images/`) with who reviewed it and when. Auto
labels of the production model join the pool too, marked `label_source = auto`; ingest takes them
into training only above `data.auto_label_min_confidence`. The pool is the `reviewed` stage's
output in `dvc.yaml`, so the next `dvc repro` records it as a new data version (the previous one
stays in the DVC cache and `dvc.lock`'s history) and trains on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from medcls.catalog import AUTO, LabelledPool, RawData, ScoringOutputs, image_file
from medcls.config import DicomConfig
from medcls.data.images import ImageLimits, encode_png, load_image, unreadable_reason
from medcls.data.images import image_id as compute_id
from medcls.data.manifest import load_dataset_facts
from medcls.errors import DataError
from medcls.review.audit import audit_queue
from medcls.review.guarantee_audit import AuditVerdict
from medcls.review.label_studio import read_label_studio_export
from medcls.support.files import printable_path, read_csv_table, write_bytes, write_table

_DICOM = DicomConfig()
POOL_COLUMNS = [
    "path",  # relative to the pool folder, as the `csv:` source reads it
    "label",
    "split",
    "label_source",  # doctor or auto
    "reviewer",
    "reviewed_at",
    "image_id",
    "model_version",
    "model_label",
    "confidence",
]


@dataclass(frozen=True)
class ImportResult:
    pool_dir: Path
    added: int  # doctor-reviewed images new to the pool, or with a changed label
    corrected: int  # of those, where the doctor's label differs from the model's
    auto_added: int
    total: int
    unchanged: int = 0  # reviews the pool already held as they are
    skipped: int = 0  # rows that could not be taken (listed with the reason in `report`)
    report: Path | None = None
    audits: list[AuditVerdict] = field(default_factory=list)  # what the audited auto labels say, per version


def import_review_file(
    reviews_path: Path, predictions: pd.DataFrame, out_dir: Path, raw_dir: Path, pool_dir: Path, dicom: DicomConfig
) -> ImportResult:
    """Import a file of reviews of scored images (`predictions`) or of the label audit's rows
    (in `out_dir`) into the pool; reviewers may give any class of the data set in `raw_dir`.
    Rows that cannot be taken are skipped and listed, with the reason, in the import report."""
    reviewed = pd.concat([predictions, audit_queue(out_dir)])
    if reviewed.empty:
        raise DataError(f"{reviews_path}: nothing to review yet (no predictions, no label audit); run `medcls score`")
    reviews = read_reviews(reviews_path, _class_names(raw_dir, reviewed))
    return import_reviews(reviews, reviewed, pool_dir, out_dir, dicom)


def _class_names(raw_dir: Path, reviewed: pd.DataFrame) -> list[str]:
    """The labels a reviewer may give: the data set's classes (audit rows carry no probability
    columns), or the scoring model's where this project holds no data."""
    if RawData(raw_dir).dataset.exists():
        return list(load_dataset_facts(raw_dir)["class_names"])
    return [column.removeprefix("prob_") for column in reviewed.columns if column.startswith("prob_")]


def read_reviews(path: Path, class_names: list[str]) -> pd.DataFrame:
    """Reviewed labels as `image_id, label, reviewer, reviewed_at`, from the edited review CSV
    (columns image_id and label; reviewer and reviewed_at optional) or a Label Studio JSON export."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    reviews = read_label_studio_export(path) if path.suffix.lower() == ".json" else _review_csv(path)
    unknown = sorted(set(reviews["label"]) - set(class_names))
    if unknown:
        raise DataError(f"{path}: labels {unknown} are not among the model's classes {class_names}")
    return reviews.drop_duplicates("image_id", keep="last")


def _review_csv(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {"image_id", "label"} - set(table.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    table = table[table["label"] != ""]
    return pd.DataFrame(
        {
            "image_id": table["image_id"],
            "label": table["label"],
            "reviewer": table.get("reviewer", ""),
            "reviewed_at": table.get("reviewed_at", ""),  # empty: the time of the import, for new rows only
        }
    )


def import_reviews(
    reviews: pd.DataFrame, predictions: pd.DataFrame, pool_dir: Path, out_dir: Path, dicom: DicomConfig = _DICOM
) -> ImportResult:
    """Add reviewed images (and the model's auto labels) to the labelled pool, each only if its
    pixels are still the ones that were scored. A doctor's label replaces an earlier one or an
    auto label of the same image; a review the pool holds already changes nothing."""
    pool = _read_pool(pool_dir)
    latest = predictions.drop_duplicates("image_id", keep="last").set_index("image_id")
    held = {(row.image_id, row.label, row.reviewer) for row in pool[pool["label_source"] == "doctor"].itertuples()}
    doctor, skipped, unchanged = [], [], 0
    for review in (Review(*row) for row in reviews[list(Review._fields)].itertuples(index=False)):
        if (review.image_id, review.label, review.reviewer) in held:
            unchanged += 1
        elif review.image_id not in latest.index:
            skipped.append((review.image_id, review.label, "never scored, nor flagged by the label audit"))
        elif (row := _pool_row(latest.loc[review.image_id], review, "doctor", pool_dir, out_dir, dicom))["reason"]:
            skipped.append((review.image_id, review.label, row["reason"]))
        else:
            doctor.append(row)
    in_pool = set(reviews["image_id"]) | set(pool["image_id"])  # an auto label never replaces anything
    auto = []
    for image_id, prediction in latest[latest["decision"] == AUTO].iterrows():
        if image_id not in in_pool:
            row = _pool_row(prediction, _auto_review(image_id, prediction), "auto", pool_dir, out_dir, dicom)
            (
                skipped.append((image_id, row["label"], f"auto label: {row['reason']}"))
                if row["reason"]
                else auto.append(row)
            )
    replaced = {row["image_id"] for row in doctor}
    merged = pd.concat([pool[~pool["image_id"].isin(replaced)], pd.DataFrame(doctor + auto, columns=POOL_COLUMNS)],
                       ignore_index=True)  # fmt: skip
    if doctor or auto:
        write_table(LabelledPool(pool_dir).labels, merged)
    report = _report(skipped, out_dir)
    corrected = sum(row["label"] != row["model_label"] for row in doctor)
    return ImportResult(pool_dir, len(doctor), corrected, len(auto), len(merged), unchanged, len(skipped), report)


class Review(NamedTuple):
    """A label given to a scored image: by a doctor, or by the model (an auto label)."""

    image_id: str
    label: str
    reviewer: str
    reviewed_at: str


def _auto_review(image_id: str, prediction: pd.Series) -> Review:
    return Review(image_id, prediction["label"], f"model v{prediction['model_version']}", prediction["scored_at"])


def _pool_row(prediction: pd.Series, review, source: str, pool_dir: Path, out_dir: Path, dicom: DicomConfig) -> dict:
    """Store the scored pixels in the pool as a lossless PNG named by their id; the row, with
    `reason` saying why it could not be taken (else empty)."""
    pixels, reason = _scored_pixels(prediction, review.image_id, out_dir, dicom)
    relative = image_file(review.image_id, ".png")
    if pixels is not None and not (pool_dir / relative).exists():
        write_bytes(pool_dir / relative, encode_png(pixels))
    return {
        "path": relative,
        "label": review.label,
        "split": "",  # train where the source has splits; split by patient where it has none
        "label_source": source,
        "reviewer": review.reviewer,
        "reviewed_at": review.reviewed_at or datetime.now(UTC).isoformat(timespec="seconds"),
        "image_id": review.image_id,
        "model_version": str(prediction["model_version"]),
        "model_label": prediction["label"],
        "confidence": float(prediction["confidence"]),
        "reason": reason,
    }


def _scored_pixels(prediction: pd.Series, image_id: str, out_dir: Path, dicom: DicomConfig):
    """(the pixels that were scored, "") from the review image scoring kept, else (missing or
    damaged) from the file at the scored path (a training image, for label-audit rows); (None,
    why) when neither holds them any more."""
    shown = str(prediction.get("review_image", "") or "")
    path, frame = _scored_path(prediction)
    reasons = []
    for source, index in ([(out_dir / shown, None)] if shown else []) + [(path, frame)]:
        try:
            images = load_image(source, ImageLimits(), dicom)
            pixels = images[index if index is not None and len(images) > 1 else 0].pixels
        except Exception as exc:  # gone, unreadable, a name that no longer decodes: this row only
            reasons.append(f"no longer readable at {printable_path(source)} ({unreadable_reason(exc)})")
            continue
        if compute_id(pixels) == image_id:
            return pixels, ""
        reasons.append(f"{printable_path(source)} now holds other pixels than were scored")
    return None, "the scored image: " + "; ".join(reasons)


def _scored_path(prediction: pd.Series) -> tuple[Path, int | None]:
    """The scored file and frame (older predictions wrote `<path>#frame<n>`)."""
    path, frame = str(prediction["path"]), str(prediction.get("frame", "") or "")
    if not frame and "#frame" in path:
        path, frame = path.rsplit("#frame", 1)
    return Path(path), int(frame) if frame.isdigit() else None


def _report(skipped: list[tuple[str, str, str]], out_dir: Path) -> Path | None:
    """The rows left out and why, beside the review queue; None when every row was taken."""
    path = ScoringOutputs(out_dir).import_report
    if not skipped:
        path.unlink(missing_ok=True)
        return None
    return write_table(path, pd.DataFrame(skipped, columns=["image_id", "label", "reason"]))


def _read_pool(pool_dir: Path) -> pd.DataFrame:
    pool = read_csv_table(LabelledPool(pool_dir).labels, ("model_version", "reviewer"))
    return pool if len(pool.columns) else pd.DataFrame(columns=POOL_COLUMNS)


def ensure_pool(pool_dir: Path) -> Path:
    """An empty pool (header only) where none exists yet, so `dvc repro` always has one to track."""
    if not LabelledPool(pool_dir).labels.exists():
        write_table(LabelledPool(pool_dir).labels, pd.DataFrame(columns=POOL_COLUMNS))
    return pool_dir
