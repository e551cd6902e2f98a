"""The predictions table: one row per image and model version, saved so that no row is ever lost.

Each chunk's rows are saved atomically as a part of their own under `predictions.pending/`
(a save costs the same however long the history), and folded into `predictions.csv` once per
run. A run killed at any point loses no saved part: the next run folds them in first.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from medcls.catalog import ScoringOutputs
from medcls.support.files import read_csv_table, write_table

TEXT_COLUMNS = ("model_version", "heatmap", "review_image", "frame", "reason")


def read_predictions(path: Path) -> pd.DataFrame:
    """A predictions table (or a pending part); empty if there is none yet."""
    return read_csv_table(path, TEXT_COLUMNS)


def save_part(out_dir: Path, rows: pd.DataFrame, name: str) -> None:
    """Save one chunk's rows, atomically, as a pending part; names sort in the order of saving."""
    if not rows.empty:
        write_table(ScoringOutputs(out_dir).pending / f"{name}.csv", rows)


def fold_pending(out_dir: Path) -> pd.DataFrame:
    """predictions.csv with the pending parts appended (the earliest row of an image and version
    kept), written atomically before the parts are removed: a run killed in between folds the
    same parts again next time, and the duplicates drop out. What is saved is read again here,
    not taken from earlier in the run, so rows another scorer saved meanwhile stay (should the
    output folder's lock not be shared, as on NFS without working locks)."""
    outputs = ScoringOutputs(out_dir)
    predictions = read_predictions(outputs.predictions)
    parts = sorted(outputs.pending.glob("*.csv"))
    if not parts:
        return predictions
    merged = pd.concat([predictions, *(read_predictions(part) for part in parts)], ignore_index=True)
    merged = merged.drop_duplicates(["image_id", "model_version"], keep="first")
    write_table(outputs.predictions, merged)
    for part in parts:
        part.unlink()
    return merged


def scored_ids(predictions: pd.DataFrame, version: str) -> frozenset[str]:
    """The image ids a model version has scored."""
    if predictions.empty:
        return frozenset()
    return frozenset(predictions.loc[predictions["model_version"] == version, "image_id"])


def of_version(predictions: pd.DataFrame, version: str) -> pd.DataFrame:
    return predictions[predictions["model_version"] == version] if len(predictions) else predictions
