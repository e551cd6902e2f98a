"""Score stage: label the images in an inbox with the production model, exactly once.

Each image gets one row in `predictions.csv` per model version (see `triage` for the decision),
rows a doctor sees a Grad-CAM heat map. Each chunk is tested for drift against the calibration
images (`drift`); a drifting chunk's auto labels go to review (unless `score.on_drift: warn`).
Exactly once: an image already scored by the version is skipped, each chunk's rows are saved as
it arrives (`store`), and a lock keeps a second run out of the same folder. Unreadable files are
quarantined, never dropped. Where the chunks run is the caller's choice (`ChunkMapper`): here one
by one, or as Prefect tasks on threads or Dask.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd

from medcls.catalog import AUDIT, AUTO, DRIFT, OUT_OF_DISTRIBUTION, REVIEW, ScoringOutputs
from medcls.config import ScoreConfig
from medcls.data.images import ImageLimits
from medcls.errors import DataError
from medcls.registry.models import RegisteredModel, load_model_version
from medcls.review import publish_review_queue
from medcls.scoring.drift import DriftCheck, check_drift
from medcls.scoring.inbox import InboxFile, InboxIndex, scan_inbox
from medcls.scoring.lock import scoring_lock
from medcls.scoring.predict import features_of, score_batch, show
from medcls.scoring.quarantine import quarantine_files, readmit_changed
from medcls.scoring.reader import ChunkReader
from medcls.scoring.report import RunReport, auto_label_basis, log_run
from medcls.scoring.store import fold_pending, of_version, save_part, scored_ids
from medcls.support.files import printable_path
from medcls.support.parallel import background, batched
from medcls.support.progress import track

_DEFAULT_LIMITS = ImageLimits()
_FILE_WRITERS = 2  # threads encoding and writing heat maps and review images beside the model


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
    settling: int = 0  # files left for a later run: modified within score.settle_seconds
    readmitted: int = 0  # quarantined files that changed, back in the inbox
    out_of_distribution: int = 0
    audited: int = 0  # auto labels also sent to review
    report: RunReport | None = None  # this run: what backs its auto labels, the drift tests per chunk
    this_run: dict[str, int] = field(default_factory=dict)  # this run's decisions

    def markdown(self) -> str:
        """The run as a markdown table (the Prefect flow run's artifact)."""
        return self.report.markdown(self.this_run) if self.report else self.summary()

    def summary(self) -> str:
        """One line for the CLI and the flow's log: this run's counts, and the version's in all."""
        later = f", {self.settling} still being written (next run)" if self.settling else ""
        checks = f"; {self.report.summary()}" if self.report is not None else ""
        return (
            f"scored {self.scored} images with v{self.model_version}: {self.auto} auto-labelled "
            f"({self.audited} audited), {self.review} to review, {self.out_of_distribution} out of distribution "
            f"in all; {self.skipped} already scored, {self.quarantined} quarantined{later}{checks}"
        )


@dataclass(frozen=True)
class ChunkResult:
    rows: pd.DataFrame
    skipped: int
    unreadable: list[tuple[InboxFile, str]]  # (file, reason): quarantined when the chunk is saved
    read: list[tuple[InboxFile, list[str]]]  # (file, the image ids it held): for the inbox index
    drift: DriftCheck | None = None


@dataclass(frozen=True)
class ChunkScorer:
    """Scores one chunk of files wherever it runs (a thread here, a Dask worker elsewhere): it is
    picklable, and loads its registered model version once per process."""

    model_name: str
    version: str
    cfg: ScoreConfig
    out_dir: Path
    done: frozenset[str]  # image ids this version has already scored
    limits: ImageLimits
    suspended: str = ""  # why audits stopped this version's auto labels

    def __call__(self, files: list[InboxFile]) -> ChunkResult:
        production = load_model_version(self.model_name, self.version)
        return score_chunk(files, production, self.cfg, self.out_dir, self.done, self.limits, self.suspended)


# Runs the scorer over the chunks somewhere and yields their results in order: `map` runs them
# here one by one; the Prefect flow maps them as tasks.
ChunkMapper = Callable[[ChunkScorer, list[list[InboxFile]]], Iterable[ChunkResult]]


def score_inbox(
    cfg: ScoreConfig,
    production: RegisteredModel,
    inbox: Path,
    out_dir: Path,
    map_chunks: ChunkMapper = map,
    limits: ImageLimits = _DEFAULT_LIMITS,
    suspended: str = "",
) -> ScoreResult:
    """Score every new image in `inbox`, chunk by chunk, under the output folder's lock: each
    chunk's rows are saved as it arrives, and folded into predictions.csv once at the end. A run
    killed at any point loses no saved row: the next run folds them in first and scores the rest.
    Files the inbox index knows unchanged, and already scored, are not read again."""
    if not inbox.is_dir():
        raise DataError(f"inbox {inbox} is not a folder (score.inbox, or --inbox)")
    outputs = ScoringOutputs(out_dir)
    with scoring_lock(out_dir):
        readmitted = readmit_changed(out_dir, inbox)
        scan = scan_inbox(inbox, cfg.settle_seconds)
        done = scored_ids(fold_pending(out_dir), production.version)
        index = InboxIndex.load(outputs.index, inbox)
        to_read, skipped = _plan(scan.files, index, done)
        quarantine_files(scan.refused, out_dir)  # links out of the inbox: the link moves, not its target
        moved: set[Path] = set()
        scorer = ChunkScorer(production.name, production.version, cfg, out_dir, done, limits, suspended)
        chunks = even_chunks(to_read, cfg.chunk_size)
        run = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
        results = []
        scored = zip(chunks, map_chunks(scorer, chunks), strict=True)
        for number, (_, result) in enumerate(track(scored, "scoring", len(to_read), "files", _files_in)):
            moved |= _save_chunk(result, index, out_dir, f"{run}-{number:06d}")
            results.append(result)
        index.save(outputs.index, [file for file in scan.files if file.path not in moved])
        counts = {
            "skipped": skipped,
            "quarantined": len(scan.refused),
            "settling": scan.settling,
            "readmitted": readmitted,
        }
        report = RunReport(auto_label_basis(production, cfg, suspended), [r.drift for r in results if r.drift],
                           cfg.on_drift)  # fmt: skip
        result = _finish(cfg, production, out_dir, fold_pending(out_dir), results, counts, report)
    if result.scored:
        _track(production, cfg, result)
    return result


def even_chunks(items: list, most: int) -> list[list]:
    """Chunks of at most `most` items, as even as can be: each chunk's drift test needs images,
    and a short last chunk (106 after 512) would have little power to see a shift."""
    count = -(-len(items) // most)
    if count == 0:
        return []
    bounds = [len(items) * number // count for number in range(count + 1)]
    return [items[start:end] for start, end in pairwise(bounds)]


def _track(production: RegisteredModel, cfg: ScoreConfig, result: ScoreResult) -> None:
    """The run in MLflow; the predictions are saved already, so a tracking failure only warns."""
    try:
        log_run(production, cfg, result.this_run, result.report)
    except Exception as exc:  # a tracking server down must not fail a run whose rows are saved
        logging.getLogger(__name__).warning("scoring run not logged to MLflow: %s", exc)


def score_chunk(
    files: list[InboxFile],
    production: RegisteredModel,
    cfg: ScoreConfig,
    out_dir: Path,
    done: frozenset[str],
    limits: ImageLimits = _DEFAULT_LIMITS,
    suspended: str = "",
) -> ChunkResult:
    """Decode, prepare and predict one chunk; heat maps and review images for the rows that need
    them; the drift tests on the whole chunk. Files are decoded on background threads while the
    model predicts the batches already prepared, so both keep the cores busy. Unreadable files are
    reported for quarantine; images already scored by this version (or copies) are skipped. It
    writes only its own heat maps and review images, so chunks can run in parallel, anywhere."""
    reader = ChunkReader(production, limits, set(done))
    with background(_FILE_WRITERS) as write:  # leaving it waits for every file (or raises)
        batches = batched(reader.fresh(files), cfg.batch_size)
        parts = [score_batch(batch, production, cfg, out_dir, write, suspended) for batch in batches]
        if not parts:
            return ChunkResult(pd.DataFrame(), reader.skipped, reader.rejected, reader.read)
        rows = pd.concat([part.rows for part in parts], ignore_index=True)
        drift = _drift(rows, np.concatenate([part.features for part in parts]), production, cfg)
        if drift.detected and cfg.on_drift == "review":
            _send_to_review(rows, files, production, cfg, out_dir, write, limits)
    return ChunkResult(rows, reader.skipped, reader.rejected, reader.read, drift)


def _drift(rows: pd.DataFrame, features: np.ndarray, production: RegisteredModel, cfg: ScoreConfig) -> DriftCheck:
    if production.trust is None:
        return DriftCheck(len(rows), cfg.drift_significance, {})
    predicted = rows["label"].map({name: i for i, name in enumerate(production.class_names)}).to_numpy()
    confidences, ood_scores = rows["confidence"].to_numpy(), rows["ood_score"].to_numpy()
    return check_drift(production.trust.reference, confidences, ood_scores, predicted, features,
                       cfg.drift_significance)  # fmt: skip


def _send_to_review(
    rows: pd.DataFrame,
    files: list[InboxFile],
    production: RegisteredModel,
    cfg: ScoreConfig,
    out_dir: Path,
    write,
    limits: ImageLimits,
) -> None:
    """A drifting chunk's auto rows become review rows (reason `drift`): the files they came from
    are read again for their review images and heat maps (drift is rare; keeping every decoded
    image of a chunk in memory in case it happens would not be)."""
    moved = (rows["decision"] == AUTO).to_numpy()
    rows.loc[moved, ["decision", "reason"]] = [REVIEW, DRIFT]
    unseen = moved & (rows["review_image"] == "").to_numpy()  # audited rows have theirs
    if not unseen.any():
        return
    position = {image_id: index for index, image_id in rows.loc[unseen, "image_id"].items()}
    paths = set(rows.loc[unseen, "path"])
    again = [file for file in files if printable_path(file.path) in paths]
    images = [image for image in ChunkReader(production, limits, set()).fresh(again) if image.image_id in position]
    for batch in batched(images, cfg.batch_size):
        shown = rows.loc[[position[image.image_id] for image in batch]].copy()
        show(shown, batch, features_of(batch, production), production, cfg, out_dir, write, np.ones(len(batch), bool))
        rows.loc[shown.index, ["review_image", "heatmap"]] = shown[["review_image", "heatmap"]]


def _plan(files: list[InboxFile], index: InboxIndex, done: frozenset[str]) -> tuple[list[InboxFile], int]:
    """The files to read, and how many images the index shows scored already (no need to read
    them). A file is read again when it changed, or holds an image this version has not scored."""
    to_read, skipped = [], 0
    for file in files:
        known = index.known(file)
        if known is not None and known.unreadable:
            continue  # unreadable and could not be moved aside: it is in quarantine.csv already
        if known is not None and known.image_ids and done.issuperset(known.image_ids):
            skipped += len(known.image_ids)
        else:
            to_read.append(file)
    return to_read, skipped


def _save_chunk(result: ChunkResult, index: InboxIndex, out_dir: Path, name: str) -> set[Path]:
    """Quarantine the chunk's unreadable files, save its rows as a pending part, and note in the
    index what each file held (or why it stays unread); returns the files moved away."""
    stuck = set(quarantine_files([(file.path, reason) for file, reason in result.unreadable], out_dir))
    save_part(out_dir, result.rows, name)
    for file, image_ids in result.read:
        index.record(file, image_ids)
    for file, reason in result.unreadable:
        if file.path in stuck:
            index.record(file, [], reason)
    return {file.path for file, _ in result.unreadable if file.path not in stuck}


def _queue_stale(outputs: ScoringOutputs) -> bool:
    """Whether the review queue may differ from what predictions.csv and the label audit hold
    now (a run that scored nothing new leaves both untouched, and so the queue)."""
    if not outputs.review_queue.exists():
        return True
    written = outputs.review_queue.stat().st_mtime_ns
    sources = (outputs.predictions, outputs.label_audit)
    return any(source.exists() and source.stat().st_mtime_ns >= written for source in sources)


def _files_in(scored: tuple[list[InboxFile], ChunkResult]) -> int:
    return len(scored[0])


def _finish(
    cfg: ScoreConfig,
    production: RegisteredModel,
    out_dir: Path,
    predictions: pd.DataFrame,
    chunks: list[ChunkResult],
    counts: dict[str, int],
    report: RunReport,
) -> ScoreResult:
    """Publish the review queue of this version's predictions and count what the run did."""
    current, outputs = of_version(predictions, production.version), ScoringOutputs(out_dir)
    if _queue_stale(outputs):
        publish_review_queue(current, cfg.review_order, production.class_names, out_dir)
    decisions = current["decision"].value_counts() if len(current) else pd.Series(dtype=int)
    return ScoreResult(
        outputs.predictions,
        outputs.review_queue,
        production.version,
        scored=sum(len(chunk.rows) for chunk in chunks),
        skipped=counts["skipped"] + sum(chunk.skipped for chunk in chunks),
        quarantined=counts["quarantined"] + sum(len(chunk.unreadable) for chunk in chunks),
        auto=int(decisions.get(AUTO, 0)),
        review=int(decisions.get(REVIEW, 0)),
        settling=counts["settling"],
        readmitted=counts["readmitted"],
        out_of_distribution=int(decisions.get(OUT_OF_DISTRIBUTION, 0)),
        audited=int((current["reason"] == AUDIT).sum()) if "reason" in current else 0,
        report=report,
        this_run=_decisions([chunk.rows for chunk in chunks]),
    )


def _decisions(parts: list[pd.DataFrame]) -> dict[str, int]:
    """This run's rows, counted by decision (and audited auto labels)."""
    rows = [part for part in parts if len(part)]
    frame = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["decision", "reason"])
    counts = frame["decision"].value_counts()
    return {
        "scored": len(frame),
        AUTO: int(counts.get(AUTO, 0)),
        "audited": int((frame["reason"] == AUDIT).sum()),
        REVIEW: int(counts.get(REVIEW, 0)),
        OUT_OF_DISTRIBUTION: int(counts.get(OUT_OF_DISTRIBUTION, 0)),
    }
