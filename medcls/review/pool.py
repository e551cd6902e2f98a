"""The labelled pool `data/reviewed/`: doctors' labels come back as training data.

`medcls review import FILE` (the edited review_queue.csv, or a Label Studio JSON export) adds
each reviewed image to the pool (`labels.csv` + `images/`) with who reviewed it and when. Auto
labels of the production model join the pool too, marked `label_source = auto`; ingest takes them
into training only above `data.auto_label_min_confidence`. The pool is the `reviewed` stage's
output in `dvc.yaml`, so the next `dvc repro` records it as a new data version (the previous one
stays in the DVC cache and `dvc.lock`'s history) and trains on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from medcls.catalog import LabelledPool, RawData, image_file
from medcls.data.manifest import load_dataset_facts
from medcls.errors import DataError
from medcls.review.audit import audit_queue
from medcls.review.label_studio import read_label_studio_export
from medcls.support.files import read_csv_table, write_bytes, write_table

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
    added: int
    corrected: int  # doctor's label differs from the model's
    auto_added: int
    total: int


def import_review_file(
    reviews_path: Path, predictions: pd.DataFrame, out_dir: Path, raw_dir: Path, pool_dir: Path
) -> ImportResult:
    """Import a file of reviews of scored images (`predictions`) or of the label audit's rows
    (in `out_dir`) into the pool; reviewers may give any class of the data set in `raw_dir`."""
    reviewed = pd.concat([predictions, audit_queue(out_dir)])
    if reviewed.empty:
        raise DataError(f"{reviews_path}: nothing to review yet (no predictions, no label audit); run `medcls score`")
    return import_reviews(read_reviews(reviews_path, _class_names(raw_dir, reviewed)), reviewed, pool_dir)


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
    now = datetime.now(UTC).isoformat(timespec="seconds")
    return pd.DataFrame(
        {
            "image_id": table["image_id"],
            "label": table["label"],
            "reviewer": table.get("reviewer", ""),
            "reviewed_at": table["reviewed_at"].replace("", now) if "reviewed_at" in table else now,
        }
    )


def import_reviews(reviews: pd.DataFrame, predictions: pd.DataFrame, pool_dir: Path) -> ImportResult:
    """Add reviewed images (and the model's auto labels) to the labelled pool. A doctor's label
    replaces an earlier auto label of the same image; nothing else in the pool changes."""
    pool = _read_pool(pool_dir)
    latest = predictions.drop_duplicates("image_id", keep="last").set_index("image_id")
    unknown = sorted(set(reviews["image_id"]) - set(latest.index))
    if unknown:
        raise DataError(f"reviews name images that were never scored: {', '.join(unknown[:5])}")
    doctor = [
        _pool_row(latest.loc[r.image_id], r.image_id, r.label, "doctor", r.reviewer, r.reviewed_at, pool_dir)
        for r in reviews.itertuples()
    ]
    in_pool = set(reviews["image_id"]) | set(pool["image_id"])  # an auto label never replaces anything
    auto = [
        _pool_row(row, image_id, row["label"], "auto", f"model v{row['model_version']}", row["scored_at"], pool_dir)
        for image_id, row in latest[latest["decision"] == "auto"].iterrows()
        if image_id not in in_pool
    ]
    kept = pool[~pool["image_id"].isin(reviews["image_id"])]
    merged = pd.concat([kept, pd.DataFrame(doctor + auto, columns=POOL_COLUMNS)], ignore_index=True)
    write_table(LabelledPool(pool_dir).labels, merged)
    corrected = sum(row["label"] != row["model_label"] for row in doctor)
    return ImportResult(pool_dir, len(doctor), corrected, len(auto), len(merged))


def _pool_row(
    prediction: pd.Series, image_id: str, label: str, source: str, reviewer: str, when: str, pool_dir: Path
) -> dict:
    """Copy the scored file into the pool (by content id, so a re-import copies nothing)."""
    origin = Path(prediction["path"].split("#frame")[0])
    if not origin.is_file():
        raise DataError(f"{origin}: the scored image is gone from the inbox; cannot add it to the pool")
    relative = image_file(image_id, origin.suffix.lower())
    if not (pool_dir / relative).exists():
        write_bytes(pool_dir / relative, origin.read_bytes())
    return {
        "path": relative,
        "label": label,
        "split": "",  # train where the source has splits; split by patient where it has none
        "label_source": source,
        "reviewer": reviewer,
        "reviewed_at": when,
        "image_id": image_id,
        "model_version": str(prediction["model_version"]),
        "model_label": prediction["label"],
        "confidence": float(prediction["confidence"]),
    }


def _read_pool(pool_dir: Path) -> pd.DataFrame:
    pool = read_csv_table(LabelledPool(pool_dir).labels, ("model_version", "reviewer"))
    return pool if len(pool.columns) else pd.DataFrame(columns=POOL_COLUMNS)


def ensure_pool(pool_dir: Path) -> Path:
    """An empty pool (header only) where none exists yet, so `dvc repro` always has one to track."""
    if not LabelledPool(pool_dir).labels.exists():
        write_table(LabelledPool(pool_dir).labels, pd.DataFrame(columns=POOL_COLUMNS))
    return pool_dir
