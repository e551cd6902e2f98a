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
from medcls.errors import DataError
from medcls.registry.models import RegisteredModel, load_model_version
from medcls.review import publish_review_queue
from medcls.scoring.lock import scoring_lock
from medcls.scoring.predict import score_batch
from medcls.scoring.quarantine import quarantine_files
from medcls.scoring.reader import ChunkReader
from medcls.scoring.store import fold_pending, of_version, read_predictions, save_part, scored_ids
from medcls.support.parallel import batched
from medcls.support.progress import track


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
class ChunkResult:
    rows: pd.DataFrame
    skipped: int
    unreadable: list[tuple[Path, str]]  # (file, reason): quarantined when the chunk is saved


@dataclass(frozen=True)
class ChunkScorer:
    """Scores one chunk of files wherever it runs (a thread here, a Dask worker elsewhere): it is
    picklable, and loads its registered model version once per process."""

    model_name: str
    version: str
    cfg: ScoreConfig
    out_dir: Path
    done: frozenset[str]  # image ids this version has already scored

    def __call__(self, files: list[Path]) -> ChunkResult:
        return score_chunk(files, load_model_version(self.model_name, self.version), self.cfg, self.out_dir, self.done)


# Runs the scorer over the chunks somewhere and yields their results in order: `map` runs them
# here one by one; the Prefect flow maps them as tasks.
ChunkMapper = Callable[[ChunkScorer, list[list[Path]]], Iterable[ChunkResult]]


def score_inbox(
    cfg: ScoreConfig, production: RegisteredModel, inbox: Path, out_dir: Path, map_chunks: ChunkMapper = map
) -> ScoreResult:
    """Score every new image in `inbox`, chunk by chunk, under the output folder's lock: each
    chunk's rows are saved as it arrives, and folded into predictions.csv once at the end. A run
    killed at any point loses no saved row: the next run folds them in first and scores the rest."""
    with scoring_lock(out_dir):
        chunks = _plan_chunks(inbox, cfg.chunk_size)
        predictions = fold_pending(out_dir, read_predictions(ScoringOutputs(out_dir).predictions))
        done = scored_ids(predictions, production.version)
        scorer = ChunkScorer(production.name, production.version, cfg, out_dir, done)
        run = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
        results = []
        scored = zip(chunks, map_chunks(scorer, chunks), strict=True)
        for number, (_, result) in enumerate(track(scored, "scoring", sum(map(len, chunks)), "files", _files_in)):
            quarantine_files(result.unreadable, out_dir)
            save_part(out_dir, result.rows, f"{run}-{number:06d}")
            results.append(result)
        return _finish(cfg, production, out_dir, fold_pending(out_dir, predictions), results)


def score_chunk(
    files: list[Path], production: RegisteredModel, cfg: ScoreConfig, out_dir: Path, done: frozenset[str]
) -> ChunkResult:
    """Decode, prepare and predict one chunk; heat maps for the rows that need one. Files are
    decoded on background threads while the model predicts the batches already prepared, so both
    keep the cores busy. Unreadable files are reported for quarantine; images already scored by
    this version (or copies) are skipped. It writes only its own heat maps, so chunks can run in
    parallel, anywhere."""
    reader = ChunkReader(production, set(done))
    parts = [score_batch(batch, production, cfg, out_dir) for batch in batched(reader.fresh(files), cfg.batch_size)]
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return ChunkResult(rows, reader.skipped, reader.rejected)


def _files_in(scored: tuple[list[Path], ChunkResult]) -> int:
    return len(scored[0])


def _plan_chunks(inbox: Path, chunk_size: int) -> list[list[Path]]:
    if not inbox.is_dir():
        raise DataError(f"inbox {inbox} is not a folder (score.inbox, or --inbox)")
    files = sorted(path for path in inbox.rglob("*") if path.is_file() and not path.name.startswith("."))
    return [files[start : start + chunk_size] for start in range(0, len(files), chunk_size)]


def _finish(
    cfg: ScoreConfig, production: RegisteredModel, out_dir: Path, predictions: pd.DataFrame, chunks: list[ChunkResult]
) -> ScoreResult:
    """Publish the review queue of this version's predictions and count what the run did."""
    current = of_version(predictions, production.version)
    publish_review_queue(current, cfg.review_order, production.class_names, out_dir)
    decisions = current["decision"].value_counts() if len(current) else pd.Series(dtype=int)
    outputs = ScoringOutputs(out_dir)
    return ScoreResult(
        outputs.predictions,
        outputs.review_queue,
        production.version,
        scored=sum(len(chunk.rows) for chunk in chunks),
        skipped=sum(chunk.skipped for chunk in chunks),
        quarantined=sum(len(chunk.unreadable) for chunk in chunks),
        auto=int(decisions.get("auto", 0)),
        review=int(decisions.get("review", 0)),
    )
