"""Score stage: label the images in an inbox with the production model.

Each image gets one row in `predictions.csv` per model version: `decision = auto` when the
calibrated confidence reaches the threshold, else `review`, with its uncertainty (entropy, margin)
and, for review rows, a Grad-CAM heat map under `heatmaps/`. `review_queue.csv` lists the review
rows, most uncertain first. Exactly once: an image already scored by the version is skipped, rows
are saved atomically after each chunk, and a lock keeps a second run out of the same folder.
Unreadable files are moved to `quarantine/` with the reason in `quarantine.csv`. The model's own
preprocessing contract is used, never params.yaml's, so scoring matches training exactly.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from medcls.audit import audit_queue
from medcls.config import DicomConfig, PreprocessConfig, ScoreConfig
from medcls.errors import DataError, RegistryError, ScoringBusy
from medcls.files import write_bytes, write_table
from medcls.imaging import ImageLimits, UnreadableImage, image_id, load_image, printable_path
from medcls.ingest import load_manifest
from medcls.parallel import ordered_map
from medcls.preprocess import prepare_loaded
from medcls.registry import PRODUCTION, production_version
from medcls.review import export_label_studio

PREDICTIONS = "predictions.csv"
REVIEW_QUEUE = "review_queue.csv"
QUARANTINE = "quarantine.csv"
HEATMAPS = "heatmaps"
LOCK = ".scoring.lock"


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
    return load_model_version(model_name, str(version.version))  # pinned: the alias may move meanwhile


@functools.lru_cache(maxsize=2)
def load_model_version(model_name: str, version: str) -> ProductionModel:
    """One registered version with its contract; cached, so each worker process loads it once."""
    import mlflow

    uri = f"models:/{model_name}/{version}"
    contract = mlflow.models.get_model_info(uri).metadata
    return ProductionModel(
        mlflow.keras.load_model(uri),
        version,
        contract["class_names"],
        PreprocessConfig(**contract["preprocess"]),
        DicomConfig(**contract.get("dicom", {})),
    )


# Runs the chunks' scoring (score_chunk) somewhere and yields their results, e.g. as Prefect tasks.
ChunkRunner = Callable[[list[list[Path]], frozenset[str]], Iterable["ChunkResult"]]


def score_inbox(
    cfg: ScoreConfig, production: ProductionModel, inbox: Path, out_dir: Path, run_chunks: ChunkRunner | None = None
) -> ScoreResult:
    """Score every new image in `inbox`, chunk by chunk: under the output folder's lock, each
    chunk's rows are saved as it arrives, so a run killed at any point loses no saved row and a
    rerun scores the rest. `run_chunks` decides where chunks run (default: here, one by one)."""

    def here(chunks: list[list[Path]], done: frozenset[str]) -> Iterator[ChunkResult]:
        return (score_chunk(files, production, cfg, out_dir, done) for files in chunks)

    with scoring_lock(out_dir):
        plan = _plan_scoring(cfg, production, inbox, out_dir)
        results = []
        for result in (run_chunks or here)(plan.chunks, plan.done):
            _merge_chunk(out_dir, result)
            results.append(result)
        return _finish_scoring(cfg, production, out_dir, results)


@dataclass(frozen=True)
class ScoringPlan:
    chunks: list[list[Path]]
    done: frozenset[str]  # image ids this model version has already scored


@dataclass(frozen=True)
class ChunkResult:
    rows: pd.DataFrame
    skipped: int
    unreadable: list[tuple[Path, str]]  # (file, reason): quarantined when the chunk is merged


@contextmanager
def scoring_lock(out_dir: Path) -> Iterator[None]:
    """One scoring run per output folder at a time. The kernel releases the lock when its holder
    exits, also when it is killed, so a crashed run never blocks the next."""
    out_dir.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(out_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "?"
            raise ScoringBusy(
                f"{out_dir}: another scoring run (pid {holder}) is writing here; it will score the inbox"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def _plan_scoring(cfg: ScoreConfig, production: ProductionModel, inbox: Path, out_dir: Path) -> ScoringPlan:
    if not inbox.is_dir():
        raise DataError(f"inbox {inbox} is not a folder (score.inbox, or --inbox)")
    files = sorted(path for path in inbox.rglob("*") if path.is_file() and not path.name.startswith("."))
    chunks = [files[start : start + cfg.chunk_size] for start in range(0, len(files), cfg.chunk_size)]
    return ScoringPlan(chunks, frozenset(_scored_ids(read_table(out_dir / PREDICTIONS), production.version)))


def score_chunk(
    files: list[Path], production: ProductionModel, cfg: ScoreConfig, out_dir: Path, done: frozenset[str]
) -> ChunkResult:
    """Decode, prepare and predict one chunk; heat maps for the rows that need one. Unreadable
    files are reported for quarantine; images already scored by this version (or copies) are
    skipped. It writes only its own heat maps, so chunks can run in parallel, anywhere."""
    decoded, rejected = _read_chunk(files, production)
    fresh, seen = [], set(done)
    for name, digest, array in decoded:
        if digest not in seen:
            seen.add(digest)
            fresh.append((name, digest, array))
    rows = _predict(fresh, production, cfg, out_dir) if fresh else pd.DataFrame()
    return ChunkResult(rows, len(decoded) - len(fresh), rejected)


def _merge_chunk(out_dir: Path, chunk: ChunkResult) -> None:
    """Quarantine the chunk's unreadable files, then append its rows to predictions.csv
    (atomically); a row already there is kept once. Only the lock holder merges."""
    _quarantine(chunk.unreadable, out_dir)
    if chunk.rows.empty:
        return
    predictions = read_table(out_dir / PREDICTIONS)
    merged = pd.concat([predictions, chunk.rows], ignore_index=True) if len(predictions) else chunk.rows
    write_table(out_dir / PREDICTIONS, merged.drop_duplicates(["image_id", "model_version"], keep="first"))


def _finish_scoring(
    cfg: ScoreConfig, production: ProductionModel, out_dir: Path, chunks: list[ChunkResult]
) -> ScoreResult:
    """Write the review queue of this version's predictions and count what the run did."""
    predictions = read_table(out_dir / PREDICTIONS)
    current = predictions[predictions["model_version"] == production.version] if len(predictions) else predictions
    queue = review_queue(current, cfg.review_order)
    queue = pd.concat([queue.assign(reason="uncertain"), audit_queue(out_dir)], ignore_index=True)
    write_table(out_dir / REVIEW_QUEUE, queue)
    export_label_studio(queue, production.class_names, out_dir, files_root=out_dir.parent)
    decisions = current["decision"].value_counts() if len(current) else pd.Series(dtype=int)
    return ScoreResult(
        out_dir / PREDICTIONS,
        out_dir / REVIEW_QUEUE,
        production.version,
        scored=sum(len(chunk.rows) for chunk in chunks),
        skipped=sum(chunk.skipped for chunk in chunks),
        quarantined=sum(len(chunk.unreadable) for chunk in chunks),
        auto=int(decisions.get("auto", 0)),
        review=int(decisions.get("review", 0)),
    )


def review_queue(predictions: pd.DataFrame, order: str) -> pd.DataFrame:
    """The `review` rows, the most uncertain first."""
    if not len(predictions):
        return predictions
    queue = predictions[predictions["decision"] == "review"]
    column, most_uncertain_first = {"entropy": ("entropy", False), "margin": ("margin", True)}.get(
        order, ("confidence", True)
    )
    return queue.sort_values(column, ascending=most_uncertain_first, kind="stable")


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


def _predict(images: list[tuple], production: ProductionModel, cfg: ScoreConfig, out_dir: Path) -> pd.DataFrame:
    batch = np.stack([array for _, _, array in images]).astype(np.float32)
    probabilities = production.model.predict(batch, batch_size=cfg.batch_size, verbose=0).astype(np.float64)
    ranked = np.sort(probabilities, axis=1)
    confidence = ranked[:, -1]
    decision = np.where(confidence >= cfg.confidence_threshold, "auto", "review")
    rows = pd.DataFrame(
        {
            "image_id": [digest for _, digest, _ in images],
            "path": [name for name, _, _ in images],
            "label": np.array(production.class_names)[probabilities.argmax(axis=1)],
            "confidence": confidence,
            **{f"prob_{name}": probabilities[:, i] for i, name in enumerate(production.class_names)},
            # Uncertainty, for ordering the review queue: entropy scaled to 0-1, and the margin
            # between the two likeliest classes.
            "entropy": entropy(probabilities),
            "margin": ranked[:, -1] - ranked[:, -2] if ranked.shape[1] > 1 else ranked[:, -1],
            "decision": decision,
            "model_version": production.version,
            "scored_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    wanted = {"all": np.ones(len(rows), bool), "review": decision == "review"}.get(cfg.heatmaps)
    rows["heatmap"] = ""
    if wanted is not None and wanted.any():
        rows.loc[wanted, "heatmap"] = _save_heatmaps(
            batch[wanted], probabilities[wanted].argmax(axis=1), rows.loc[wanted, "image_id"], production, out_dir
        )
    return rows


def entropy(probabilities: np.ndarray) -> np.ndarray:
    """Shannon entropy of each row divided by log(classes): 0 certain, 1 uniform."""
    logs = np.log(np.clip(probabilities, 1e-12, 1.0))
    return -(probabilities * logs).sum(axis=1) / np.log(max(probabilities.shape[1], 2))


def _save_heatmaps(
    batch: np.ndarray, classes: np.ndarray, ids: pd.Series, production: ProductionModel, out_dir: Path
) -> list[str]:
    """Grad-CAM overlays as PNG files under `heatmaps/`; returns their paths relative to out_dir."""
    from medcls.explain import encode_png, grad_cam, overlay

    maps = np.concatenate(
        [grad_cam(production.model, batch[i : i + 64], classes[i : i + 64]) for i in range(0, len(batch), 64)]
    )
    paths = []
    for image, heat, digest in zip(batch, maps, ids, strict=True):
        relative = f"{HEATMAPS}/{digest[:24]}-v{production.version}.png"
        write_bytes(out_dir / relative, encode_png(overlay(image.astype(np.uint8), heat)))
        paths.append(relative)
    return paths


def _scored_ids(predictions: pd.DataFrame, version: str) -> set[str]:
    if predictions.empty:
        return set()
    return set(predictions.loc[predictions["model_version"] == version, "image_id"])


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
    write_table(out_dir / QUARANTINE, pd.concat([read_table(out_dir / QUARANTINE), pd.DataFrame(records)]))
    return len(records)


def read_table(path: Path) -> pd.DataFrame:
    """One of scoring's CSV tables (predictions, quarantine); empty if there is none yet."""
    if not path.exists():
        return pd.DataFrame()
    return pd.read_csv(path, dtype={"model_version": str, "heatmap": str}, keep_default_na=False)
