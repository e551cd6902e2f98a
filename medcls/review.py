"""The review round trip: the queue goes out to doctors, their labels come back as training data.

Out: `review_queue.csv` (written by scoring) and a Label Studio import file (`review_tasks.json`,
with `label_studio.xml`, the labelling interface): one task per image with the predicted label as
a pre-annotation and the Grad-CAM overlay beside the image.

In: `medcls review import FILE` (the edited CSV, or a Label Studio JSON export) adds each reviewed
image to the labelled pool `data/reviewed/` (`labels.csv` + `images/`) with who reviewed it and
when. Auto labels of the production model join the pool too, marked `label_source = auto`; the
ingest stage takes them into training only above `data.auto_label_min_confidence`. The pool is
the `reviewed` stage's output in `dvc.yaml`, so the next `dvc repro` records it as a new data
version (the previous one stays in the DVC cache and `dvc.lock`'s history) and trains on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pandas as pd

from medcls.errors import DataError
from medcls.files import read_json, write_bytes, write_table

LABELS = "labels.csv"
IMAGES = "images"
TASKS = "review_tasks.json"
LABEL_CONFIG = "label_studio.xml"
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


def export_label_studio(queue: pd.DataFrame, class_names: list[str], out_dir: Path, files_root: Path) -> Path:
    """`review_tasks.json` for Label Studio's import, and `label_studio.xml` for its labelling
    setup. Images are served as local files relative to `files_root` (Label Studio's
    LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)."""
    tasks = [_task(row, out_dir, files_root) for row in queue.to_dict("records")]
    write_bytes(out_dir / TASKS, json.dumps(tasks, indent=1).encode())
    choices = "\n".join(f"    <Choice value={quoteattr(name)}/>" for name in class_names)
    config = (
        "<View>\n"
        '  <Image name="image" value="$image" zoom="true"/>\n'
        '  <Image name="heatmap" value="$heatmap"/>\n'
        '  <Choices name="label" toName="image" choice="single" showInline="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )
    write_bytes(out_dir / LABEL_CONFIG, config.encode())
    return out_dir / TASKS


def _task(row: dict, out_dir: Path, files_root: Path) -> dict:
    heatmap = row.get("heatmap")
    data = {
        "image": _local_file(Path(row["path"]), files_root),
        "image_id": row["image_id"],
        "model_version": str(row["model_version"]),
        "confidence": round(float(row["confidence"]), 4),
    }
    if isinstance(heatmap, str) and heatmap:
        data["heatmap"] = _local_file(out_dir / heatmap, files_root)
    prediction = {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [row["label"]]}}
    return {
        "data": data,
        "predictions": [
            {"model_version": f"v{row['model_version']}", "score": float(row["confidence"]), "result": [prediction]}
        ],
    }


def _local_file(path: Path, root: Path) -> str:
    resolved, root = path.resolve(), root.resolve()
    relative = resolved.relative_to(root) if resolved.is_relative_to(root) else resolved
    return f"/data/local-files/?d={relative.as_posix().lstrip('/')}"


def read_reviews(path: Path, class_names: list[str]) -> pd.DataFrame:
    """Reviewed labels as `image_id, label, reviewer, reviewed_at`, from the edited review CSV
    (columns image_id and label; reviewer and reviewed_at optional) or a Label Studio JSON export."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    reviews = _label_studio(path) if path.suffix.lower() == ".json" else _review_csv(path)
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


def _label_studio(path: Path) -> pd.DataFrame:
    """The latest non-cancelled annotation of each task that has one."""
    try:
        tasks = read_json(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a Label Studio JSON export: {exc}") from None
    rows = []
    for task in tasks if isinstance(tasks, list) else []:
        annotations = [a for a in task.get("annotations", []) if not a.get("was_cancelled")]
        choices = [
            result["value"]["choices"][0]
            for result in (annotations[-1].get("result", []) if annotations else [])
            if result.get("type") == "choices" and result.get("value", {}).get("choices")
        ]
        if choices and "image_id" in task.get("data", {}):
            annotation = annotations[-1]
            reviewer = annotation.get("completed_by")
            rows.append(
                {
                    "image_id": task["data"]["image_id"],
                    "label": choices[0],
                    "reviewer": str(reviewer.get("email", reviewer) if isinstance(reviewer, dict) else reviewer or ""),
                    "reviewed_at": annotation.get("updated_at") or annotation.get("created_at") or "",
                }
            )
    if not rows:
        raise DataError(f"{path}: no annotated task with an image_id (is it a Label Studio JSON export?)")
    return pd.DataFrame(rows)


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
    write_table(pool_dir / LABELS, merged)
    corrected = sum(row["label"] != row["model_label"] for row in doctor)
    return ImportResult(pool_dir, len(doctor), corrected, len(auto), len(merged))


def _pool_row(
    prediction: pd.Series, image_id: str, label: str, source: str, reviewer: str, when: str, pool_dir: Path
) -> dict:
    """Copy the scored file into the pool (by content id, so a re-import copies nothing)."""
    origin = Path(prediction["path"].split("#frame")[0])
    if not origin.is_file():
        raise DataError(f"{origin}: the scored image is gone from the inbox; cannot add it to the pool")
    relative = Path(IMAGES) / image_id[:2] / f"{image_id}{origin.suffix.lower()}"
    if not (pool_dir / relative).exists():
        write_bytes(pool_dir / relative, origin.read_bytes())
    return {
        "path": relative.as_posix(),
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
    path = pool_dir / LABELS
    if not path.exists():
        return pd.DataFrame(columns=POOL_COLUMNS)
    return pd.read_csv(path, dtype={"model_version": str, "reviewer": str}, keep_default_na=False)


def ensure_pool(pool_dir: Path) -> Path:
    """An empty pool (header only) where none exists yet, so `dvc repro` always has one to track."""
    if not (pool_dir / LABELS).exists():
        write_table(pool_dir / LABELS, pd.DataFrame(columns=POOL_COLUMNS))
    return pool_dir
