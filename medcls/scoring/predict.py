"""Scoring one batch: the model's probabilities and features in one forward pass, the triage
columns, and heat maps for the rows that get one."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from medcls.config import ScoreConfig
from medcls.model.network import logits_kernel, with_features
from medcls.registry.models import RegisteredModel
from medcls.scoring.heatmaps import class_activation_maps, save_heatmaps
from medcls.scoring.triage import triage


def score_batch(
    images: list[tuple[str, str, np.ndarray]], production: RegisteredModel, cfg: ScoreConfig, out_dir: Path
) -> pd.DataFrame:
    """One row per (name, image id, prepared array)."""
    batch = np.stack([array for _, _, array in images]).astype(np.float32)
    # predict_on_batch: model.predict's per-call set-up costs as much as predicting 200 images here.
    probabilities, features = _with_features(production.model).predict_on_batch(batch)
    probabilities = probabilities.astype(np.float64)
    rows = pd.DataFrame(
        {
            "image_id": [digest for _, digest, _ in images],
            "path": [name for name, _, _ in images],
            **triage(probabilities, production.class_names, cfg.confidence_threshold),
            "model_version": production.version,
            "scored_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    wanted = {"all": np.ones(len(rows), bool), "review": rows["decision"].to_numpy() == "review"}.get(cfg.heatmaps)
    rows["heatmap"] = ""
    if wanted is not None and wanted.any():
        classes = probabilities[wanted].argmax(axis=1)
        maps = class_activation_maps(features[wanted], logits_kernel(production.model), classes)
        ids = rows.loc[wanted, "image_id"].tolist()
        rows.loc[wanted, "heatmap"] = save_heatmaps(batch[wanted], maps, ids, production.version, out_dir)
    return rows


@functools.lru_cache(maxsize=2)
def _with_features(model):
    """The model with its features as a second output, built once per model."""
    return with_features(model)
