"""Score stage: label the images in an inbox with the production model.

Each image gets one row in `predictions.csv` per model version (an image already scored by that
version is skipped), `decision = auto` when the model's confidence reaches the threshold, else
`review`. `review_queue.csv` lists the review rows, least confident first. Unreadable files are
moved to `quarantine/` with the reason in `quarantine.csv`. The model's own preprocessing
contract is used, never params.yaml's, so scoring matches training exactly.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from medcls.config import DicomConfig, PreprocessConfig, ScoreConfig
from medcls.errors import DataError, RegistryError
from medcls.files import write_table
from medcls.imaging import ImageLimits, UnreadableImage, image_id, load_image, printable_path
from medcls.ingest import load_manifest
from medcls.parallel import ordered_map
from medcls.preprocess import prepare_loaded
from medcls.registry import PRODUCTION, production_version

PREDICTIONS = "predictions.csv"
REVIEW_QUEUE = "review_queue.csv"
QUARANTINE = "quarantine.csv"
CHUNK_BATCHES = 8  # batches decoded together; results are saved after each chunk


@dataclass(frozen=True)
class ScoreResult:
    predictions_path: Path
    review_path: Path
    model_version: str
    scored: int
    skipped: int
    quarantined: int
    auto: int
    review: int


@dataclass(frozen=True)
class ProductionModel:
    model: object
    version: str
    class_names: list[str]
    preprocess: PreprocessConfig
    dicom: DicomConfig  # how DICOM files were converted for training


def load_production_model(model_name: str) -> ProductionModel:
    """The model behind `@production`, with its class names and preprocessing contract."""
    import mlflow

    version = production_version(model_name)
    if version is None:
        raise RegistryError(
            f"model '{model_name}' has no '{PRODUCTION}' version in {mlflow.get_tracking_uri()}; "
            "train one (dvc repro) or run `medcls promote VERSION`"
        )
    uri = f"models:/{model_name}/{version.version}"  # pinned: the alias may move meanwhile
    contract = mlflow.models.get_model_info(uri).metadata
    model = mlflow.keras.load_model(uri)
    return ProductionModel(
        model,
        str(version.version),
        contract["class_names"],
        PreprocessConfig(**contract["preprocess"]),
        DicomConfig(**contract.get("dicom", {})),
    )


def score_inbox(cfg: ScoreConfig, production: ProductionModel, inbox: Path, out_dir: Path) -> ScoreResult:
    """Score every new image in `inbox`; results are saved after each chunk, so a rerun resumes."""
    if not inbox.is_dir():
        raise DataError(f"inbox {inbox} is not a folder (score.inbox, or --inbox)")
    out_dir.mkdir(parents=True, exist_ok=True)
    predictions = _read_table(out_dir / PREDICTIONS)
    done = _scored_ids(predictions, production.version)
    files = sorted(path for path in inbox.rglob("*") if path.is_file() and not path.name.startswith("."))
    counts = {"scored": 0, "skipped": 0, "quarantined": 0}
    chunk = cfg.batch_size * CHUNK_BATCHES
    for start in range(0, len(files), chunk):
        decoded, rejected = _read_chunk(files[start : start + chunk], production)
        counts["quarantined"] += _quarantine(rejected, out_dir)
        fresh = []
        for path, digest, array in decoded:  # already scored by this version, or a copy: skip
            if digest not in done:
                done.add(digest)
                fresh.append((path, digest, array))
        counts["skipped"] += len(decoded) - len(fresh)
        if fresh:
            rows = _predict(fresh, production, cfg)
            predictions = pd.concat([predictions, rows], ignore_index=True) if len(predictions) else rows
            write_table(out_dir / PREDICTIONS, predictions)
            counts["scored"] += len(rows)
    current = predictions[predictions["model_version"] == production.version] if len(predictions) else predictions
    write_table(out_dir / REVIEW_QUEUE, _review_queue(current))
    decisions = current["decision"].value_counts() if len(current) else pd.Series(dtype=int)
    return ScoreResult(
        out_dir / PREDICTIONS,
        out_dir / REVIEW_QUEUE,
        production.version,
        counts["scored"],
        counts["skipped"],
        counts["quarantined"],
        int(decisions.get("auto", 0)),
        int(decisions.get("review", 0)),
    )


def make_demo_inbox(raw_dir: Path, inbox: Path, count: int, seed: int) -> list[Path]:
    """Copy `count` held-out test images into `inbox`, under neutral names, as new arrivals."""
    manifest = load_manifest(raw_dir)
    test = manifest[manifest["split"] == "test"]
    chosen = test.sample(n=min(count, len(test)), random_state=seed)
    inbox.mkdir(parents=True, exist_ok=True)
    return [
        Path(shutil.copy2(raw_dir / row.file, inbox / f"demo-{number:04d}{Path(row.file).suffix}"))
        for number, row in enumerate(chosen.itertuples())
    ]


def _read_chunk(files: list[Path], production: ProductionModel) -> tuple[list[tuple], list[tuple[Path, str]]]:
    """Decode and prepare files in parallel: [(name, image_id, array)] and [(path, reason)]."""

    def read(path: Path) -> tuple[list[tuple], str | None]:
        try:
            images = load_image(path, ImageLimits(), production.dicom)
        except UnreadableImage as exc:
            return [], str(exc)
        name = printable_path(path)
        return [
            (name if image.frame is None else f"{name}#frame{image.frame}", image_id(image.pixels),
             prepare_loaded(image, production.preprocess))
            for image in images
        ], None  # fmt: skip

    decoded, rejected = [], []
    for path, (images, reason) in zip(files, ordered_map(read, files), strict=True):
        decoded += images
        if reason is not None:
            rejected.append((path, reason))
    return decoded, rejected


def _predict(images: list[tuple], production: ProductionModel, cfg: ScoreConfig) -> pd.DataFrame:
    batch = np.stack([array for _, _, array in images]).astype(np.float32)
    probabilities = production.model.predict(batch, batch_size=cfg.batch_size, verbose=0)
    confidence = probabilities.max(axis=1)
    return pd.DataFrame(
        {
            "image_id": [digest for _, digest, _ in images],
            "path": [name for name, _, _ in images],
            "label": np.array(production.class_names)[probabilities.argmax(axis=1)],
            "confidence": confidence,
            **{f"prob_{name}": probabilities[:, i] for i, name in enumerate(production.class_names)},
            "decision": np.where(confidence >= cfg.confidence_threshold, "auto", "review"),
            "model_version": production.version,
            "scored_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )


def _scored_ids(predictions: pd.DataFrame, version: str) -> set[str]:
    if predictions.empty:
        return set()
    return set(predictions.loc[predictions["model_version"] == version, "image_id"])


def _review_queue(predictions: pd.DataFrame) -> pd.DataFrame:
    if not len(predictions):
        return predictions
    return predictions[predictions["decision"] == "review"].sort_values("confidence", kind="stable")


def _quarantine(rejected: list[tuple[Path, str]], out_dir: Path) -> int:
    """Move unreadable files aside (never delete them) and record why."""
    if not rejected:
        return 0
    folder = out_dir / "quarantine"
    folder.mkdir(exist_ok=True)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    records = []
    for path, reason in rejected:
        target = folder / f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{path.name}"
        shutil.move(path, target)
        record = {"path": printable_path(path), "moved_to": printable_path(target), "reason": reason}
        records.append({**record, "quarantined_at": now})
    write_table(out_dir / QUARANTINE, pd.concat([_read_table(out_dir / QUARANTINE), pd.DataFrame(records)]))
    return len(records)


def _read_table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"model_version": str}) if path.exists() else pd.DataFrame()
