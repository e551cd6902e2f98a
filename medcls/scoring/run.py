"""Score stage: label the images in an inbox with the production model, exactly once.

Each image gets one row in `predictions.csv` per model version (see `triage` for the decision),
review rows a Grad-CAM heat map. Exactly once: an image already scored by the version is
skipped, each chunk's rows are saved as it arrives (`store`), and a lock keeps a second run out
of the same folder. Unreadable files are quarantined, never dropped. Where the chunks run is the
caller's choice (`ChunkMapper`): here one by one, or as Prefect tasks on threads or Dask.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from medcls.catalog import ScoringOutputs
from medcls.config import ScoreConfig
from medcls.data.images import ImageLimits
from medcls.errors import DataError
from medcls.registry.models import RegisteredModel, load_model_version
from medcls.review import publish_review_queue
from medcls.scoring.inbox import InboxFile, InboxIndex, scan_inbox
from medcls.scoring.lock import scoring_lock
from medcls.scoring.predict import score_batch
from medcls.scoring.quarantine import quarantine_files, readmit_changed
from medcls.scoring.reader import ChunkReader
from medcls.scoring.store import fold_pending, of_version, save_part, scored_ids
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

    def summary(self) -> str:
        """One line for the CLI and the flow's log: this run's counts, and the version's in all."""
        later = f", {self.settling} still being written (next run)" if self.settling else ""
        return (
            f"scored {self.scored} images with v{self.model_version}: {self.auto} auto-labelled, "
            f"{self.review} to review in all; {self.skipped} already scored, {self.quarantined} quarantined{later}"
        )


@dataclass(frozen=True)
class ChunkResult:
    rows: pd.DataFrame
    skipped: int
    unreadable: list[tuple[InboxFile, str]]  # (file, reason): quarantined when the chunk is saved
    read: list[tuple[InboxFile, list[str]]]  # (file, the image ids it held): for the inbox index


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

    def __call__(self, files: list[InboxFile]) -> ChunkResult:
        production = load_model_version(self.model_name, self.version)
        return score_chunk(files, production, self.cfg, self.out_dir, self.done, self.limits)


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
        scorer = ChunkScorer(production.name, production.version, cfg, out_dir, done, limits)
        chunks = [to_read[start : start + cfg.chunk_size] for start in range(0, len(to_read), cfg.chunk_size)]
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
        return _finish(cfg, production, out_dir, fold_pending(out_dir), results, counts)


def score_chunk(
    files: list[InboxFile],
    production: RegisteredModel,
    cfg: ScoreConfig,
    out_dir: Path,
    done: frozenset[str],
    limits: ImageLimits = _DEFAULT_LIMITS,
) -> ChunkResult:
    """Decode, prepare and predict one chunk; heat maps and review images for the rows that need
    them. Files are decoded on background threads while the model predicts the batches already
    prepared, so both keep the cores busy. Unreadable files are reported for quarantine; images
    already scored by this version (or copies) are skipped. It writes only its own heat maps and
    review images, so chunks can run in parallel, anywhere."""
    reader = ChunkReader(production, limits, set(done))
    with background(_FILE_WRITERS) as write:  # leaving it waits for every file (or raises)
        batches = batched(reader.fresh(files), cfg.batch_size)
        parts = [score_batch(batch, production, cfg, out_dir, write) for batch in batches]
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return ChunkResult(rows, reader.skipped, reader.rejected, reader.read)


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
) -> ScoreResult:
    """Publish the review queue of this version's predictions and count what the run did."""
    current = of_version(predictions, production.version)
    if _queue_stale(ScoringOutputs(out_dir)):
        publish_review_queue(current, cfg.review_order, production.class_names, out_dir)
    decisions = current["decision"].value_counts() if len(current) else pd.Series(dtype=int)
    outputs = ScoringOutputs(out_dir)
    return ScoreResult(
        outputs.predictions,
        outputs.review_queue,
        production.version,
        scored=sum(len(chunk.rows) for chunk in chunks),
        skipped=counts["skipped"] + sum(chunk.skipped for chunk in chunks),
        quarantined=counts["quarantined"] + sum(len(chunk.unreadable) for chunk in chunks),
        auto=int(decisions.get("auto", 0)),
        review=int(decisions.get("review", 0)),
        settling=counts["settling"],
        readmitted=counts["readmitted"],
    )
