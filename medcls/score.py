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
from dataclasses import dataclass, field
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
from medcls.parallel import batched, ordered_map
from medcls.preprocess import prepare_loaded
from medcls.registry import PRODUCTION, production_version
from medcls.review import export_label_studio

PREDICTIONS = "predictions.csv"
PENDING = "predictions.pending"  # each chunk's rows, saved as it is scored, until the run folds them in
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

    def summary(self) -> str:
        """One line for the CLI and the flow's log: this run's counts, and the version's in all."""
        return (
            f"scored {self.scored} images with v{self.model_version}: {self.auto} auto-labelled, "
            f"{self.review} to review in all; {self.skipped} already scored, {self.quarantined} quarantined"
        )


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
    chunk's rows are saved as it arrives (a small file of its own, so saving costs the same
    however long the history in predictions.csv), and folded into predictions.csv once at the
    end. A run killed at any point loses no saved row: the next run folds them in first and
    scores the rest. `run_chunks` decides where chunks run (default: here, one by one)."""

    def here(chunks: list[list[Path]], done: frozenset[str]) -> Iterator[ChunkResult]:
        return (score_chunk(files, production, cfg, out_dir, done) for files in chunks)

    with scoring_lock(out_dir):
        plan = _plan_scoring(cfg, production, inbox, out_dir)
        run = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
        results = []
        for number, result in enumerate((run_chunks or here)(plan.chunks, plan.done)):
            _save_chunk(out_dir, result, f"{run}-{number:06d}")
            results.append(result)
        return _finish_scoring(cfg, production, out_dir, _fold_pending(out_dir, plan.predictions), results)


@dataclass(frozen=True)
class ScoringPlan:
    chunks: list[list[Path]]
    predictions: pd.DataFrame  # saved so far, pending rows of a killed run included
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
    predictions = _fold_pending(out_dir, read_table(out_dir / PREDICTIONS))
    return ScoringPlan(chunks, predictions, frozenset(_scored_ids(predictions, production.version)))


def score_chunk(
    files: list[Path], production: ProductionModel, cfg: ScoreConfig, out_dir: Path, done: frozenset[str]
) -> ChunkResult:
    """Decode, prepare and predict one chunk; heat maps for the rows that need one. Files are
    decoded on background threads while the model predicts the batches already prepared, so both
    keep the cores busy. Unreadable files are reported for quarantine; images already scored by
    this version (or copies) are skipped. It writes only its own heat maps, so chunks can run in
    parallel, anywhere."""
    reader = ChunkReader(production, set(done))
    parts = [_score_batch(batch, production, cfg, out_dir) for batch in batched(reader.fresh(files), cfg.batch_size)]
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return ChunkResult(rows, reader.skipped, reader.rejected)


def _save_chunk(out_dir: Path, chunk: ChunkResult, name: str) -> None:
    """Quarantine the chunk's unreadable files, then save its rows (atomically) as a pending part
    named so that parts sort in the order they were saved. Only the lock holder saves."""
    _quarantine(chunk.unreadable, out_dir)
    if not chunk.rows.empty:
        write_table(out_dir / PENDING / f"{name}.csv", chunk.rows)


def _fold_pending(out_dir: Path, predictions: pd.DataFrame) -> pd.DataFrame:
    """predictions.csv with the pending parts appended (the earliest row of an image and version
    kept), written atomically before the parts are removed: a run killed in between folds the
    same parts again next time, and the duplicates drop out."""
    parts = sorted((out_dir / PENDING).glob("*.csv"))
    if not parts:
        return predictions
    merged = pd.concat([predictions, *(read_table(part) for part in parts)], ignore_index=True)
    merged = merged.drop_duplicates(["image_id", "model_version"], keep="first")
    write_table(out_dir / PREDICTIONS, merged)
    for part in parts:
        part.unlink()
    return merged


def _finish_scoring(
    cfg: ScoreConfig, production: ProductionModel, out_dir: Path, predictions: pd.DataFrame, chunks: list[ChunkResult]
) -> ScoreResult:
    """Write the review queue of this version's predictions and count what the run did."""
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


@dataclass
class ChunkReader:
    """Reads a chunk's files into (name, image_id, prepared array), counting what it leaves out."""

    production: ProductionModel
    seen: set[str]  # image ids scored already, or met earlier in this chunk
    skipped: int = 0
    rejected: list[tuple[Path, str]] = field(default_factory=list)  # (file, reason)

    def fresh(self, files: list[Path]) -> Iterator[tuple[str, str, np.ndarray]]:
        """The images not seen yet, in file order, decoded and prepared on all cores ahead of use."""
        for path, (images, reason) in zip(files, ordered_map(self._read, files), strict=True):
            if reason is not None:
                self.rejected.append((path, reason))
            for name, digest, array in images:
                if digest in self.seen:
                    self.skipped += 1
                    continue
                self.seen.add(digest)
                yield name, digest, array

    def _read(self, path: Path) -> tuple[list[tuple[str, str, np.ndarray]], str | None]:
        try:
            images = load_image(path, ImageLimits(), self.production.dicom)
        except UnreadableImage as exc:
            return [], str(exc)
        name = printable_path(path)
        return [
            (name if image.frame is None else f"{name}#frame{image.frame}", image_id(image.pixels),
             prepare_loaded(image, self.production.preprocess))
            for image in images
        ], None  # fmt: skip


def _score_batch(
    images: list[tuple[str, str, np.ndarray]], production: ProductionModel, cfg: ScoreConfig, out_dir: Path
) -> pd.DataFrame:
    batch = np.stack([array for _, _, array in images]).astype(np.float32)
    # predict_on_batch: model.predict's per-call set-up costs as much as predicting 200 images here.
    probabilities, features = _with_features(production.model).predict_on_batch(batch)
    probabilities = probabilities.astype(np.float64)
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
        classes = probabilities[wanted].argmax(axis=1)
        rows.loc[wanted, "heatmap"] = _save_heatmaps(
            batch[wanted], features[wanted], classes, rows.loc[wanted, "image_id"], production, out_dir
        )
    return rows


@functools.lru_cache(maxsize=2)
def _with_features(model):
    """The model with its features as a second output, built once per model."""
    from medcls.model import with_features

    return with_features(model)


def entropy(probabilities: np.ndarray) -> np.ndarray:
    """Shannon entropy of each row divided by log(classes): 0 certain, 1 uniform."""
    logs = np.log(np.clip(probabilities, 1e-12, 1.0))
    return -(probabilities * logs).sum(axis=1) / np.log(max(probabilities.shape[1], 2))


def _save_heatmaps(
    images: np.ndarray,
    features: np.ndarray,
    classes: np.ndarray,
    ids: pd.Series,
    production: ProductionModel,
    out_dir: Path,
) -> list[str]:
    """Grad-CAM overlays as JPEG files under `heatmaps/`; returns their paths relative to out_dir."""
    from medcls.explain import class_activation_maps, encode_jpeg, overlay
    from medcls.model import logits_kernel

    maps = class_activation_maps(features, logits_kernel(production.model), classes)
    paths = []
    for image, heat, digest in zip(images, maps, ids, strict=True):
        relative = f"{HEATMAPS}/{digest[:24]}-v{production.version}.jpg"
        write_bytes(out_dir / relative, encode_jpeg(overlay(image.astype(np.uint8), heat)))
        paths.append(relative)
    return paths


def _scored_ids(predictions: pd.DataFrame, version: str) -> set[str]:
    if predictions.empty:
        return set()
    return set(predictions.loc[predictions["model_version"] == version, "image_id"])


def _quarantine(rejected: list[tuple[Path, str]], out_dir: Path) -> None:
    """Move unreadable files aside (never delete them), recording why before moving: a run killed
    in between leaves the file in the inbox with a record of a move that never happened, and the
    next run's record for that file replaces it."""
    if not rejected:
        return
    folder = out_dir / "quarantine"
    folder.mkdir(exist_ok=True)
    now = datetime.now(UTC)
    stamp = f"{now:%Y%m%dT%H%M%S%f}"
    moves = [(path, folder / f"{stamp}-{number}-{path.name}") for number, (path, _) in enumerate(rejected)]
    records = pd.DataFrame(
        {
            "path": [printable_path(path) for path, _ in moves],
            "moved_to": [printable_path(target) for _, target in moves],
            "reason": [reason for _, reason in rejected],
            "quarantined_at": now.isoformat(timespec="seconds"),
        }
    )
    earlier = read_table(out_dir / QUARANTINE)
    if len(earlier):
        moved = earlier["moved_to"].map(lambda target: Path(target).exists())
        never_moved = earlier["path"].isin(records["path"]) & ~moved
        records = pd.concat([earlier[~never_moved], records], ignore_index=True)
    write_table(out_dir / QUARANTINE, records)
    for path, target in moves:
        shutil.move(path, target)


def read_table(path: Path) -> pd.DataFrame:
    """One of scoring's CSV tables (predictions, quarantine); empty if there is none yet."""
    if not path.exists():
        return pd.DataFrame()
    return pd.read_csv(path, dtype={"model_version": str, "heatmap": str}, keep_default_na=False)
