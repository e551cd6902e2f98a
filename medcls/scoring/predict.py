"""Scoring one batch: the model's probabilities and features in one forward pass, the triage and
decision columns, and for the rows a doctor will see, a heat map and the image itself as a PNG
(pixels only: no file name, no DICOM header)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from medcls.catalog import AUDIT, AUTO, ScoringOutputs
from medcls.config import ScoreConfig
from medcls.data.images import encode_png
from medcls.model.network import logits_kernel, pooled, with_features
from medcls.registry.models import RegisteredModel
from medcls.scoring.heatmaps import class_activation_maps, heatmap_path, save_heatmap
from medcls.scoring.reader import ScannedImage
from medcls.scoring.triage import decide, triage
from medcls.support.files import write_bytes

Submit = Callable[..., None]  # runs a file-writing job somewhere (medcls.support.parallel.background)


@dataclass(frozen=True)
class ScoredBatch:
    rows: pd.DataFrame
    features: np.ndarray  # pooled, one vector per row: what the drift tests compare


def score_batch(
    images: list[ScannedImage],
    production: RegisteredModel,
    cfg: ScoreConfig,
    out_dir: Path,
    write: Submit,
    suspended: str = "",
) -> ScoredBatch:
    """One row per image. Its heat maps and review images are written through `write` (threads
    beside the model's next batch): the caller waits for them before it saves the rows."""
    batch = np.stack([image.prepared for image in images]).astype(np.float32)
    # predict_on_batch: model.predict's per-call set-up costs as much as predicting 200 images here.
    probabilities, features = _with_features(production.model).predict_on_batch(batch)
    probabilities, features = probabilities.astype(np.float64), np.asarray(features)
    vectors = pooled(features)
    image_ids = [image.image_id for image in images]
    acquisitions = [image.acquisition for image in images]
    rows = pd.DataFrame(
        {
            "image_id": image_ids,
            "path": [image.path for image in images],
            "frame": ["" if image.frame is None else str(image.frame) for image in images],
            **triage(probabilities, production.class_names),
            **decide(image_ids, probabilities, vectors, acquisitions, production, cfg, suspended),
            "model_version": production.version,
            "scored_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    rows["review_image"], rows["heatmap"] = "", ""
    show(rows, images, features, production, cfg, out_dir, write, shown_to_doctor(rows))
    return ScoredBatch(rows, vectors)


def shown_to_doctor(rows: pd.DataFrame) -> np.ndarray:
    """The rows a doctor will look at: every one not auto-labelled, and the audited auto labels."""
    return ((rows["decision"] != AUTO) | (rows["reason"] == AUDIT)).to_numpy()


def show(
    rows: pd.DataFrame,
    images: list[ScannedImage],
    features: np.ndarray,
    production: RegisteredModel,
    cfg: ScoreConfig,
    out_dir: Path,
    write: Submit,
    shown: np.ndarray,
) -> None:
    """Write the review images of the `shown` rows and the heat maps `score.heatmaps` asks for,
    and name them in `rows` (aligned with `images`)."""
    rows.loc[shown, "review_image"] = [_review_image(image, out_dir, write) for image, wanted in
                                       zip(images, shown, strict=True) if wanted]  # fmt: skip
    wanted = {"all": np.ones(len(rows), bool), "review": shown}.get(cfg.heatmaps)
    if wanted is None or not wanted.any():
        return
    classes = rows.loc[wanted, "label"].map({name: i for i, name in enumerate(production.class_names)}).to_numpy()
    maps = class_activation_maps(features[wanted], logits_kernel(production.model), classes)
    paths = [heatmap_path(out_dir, image_id, production.version) for image_id in rows.loc[wanted, "image_id"]]
    pictured = [image for image, chosen in zip(images, wanted, strict=True) if chosen]
    for path, image, heat in zip(paths, pictured, maps, strict=True):
        write(save_heatmap, path, image.pixels, heat, production.preprocess)
    rows.loc[wanted, "heatmap"] = [path.relative_to(out_dir).as_posix() for path in paths]


def features_of(images: list[ScannedImage], production: RegisteredModel) -> np.ndarray:
    """The images' last convolutional features (for heat maps)."""
    batch = np.stack([image.prepared for image in images]).astype(np.float32)
    _, features = _with_features(production.model).predict_on_batch(batch)
    return np.asarray(features)


def _review_image(image: ScannedImage, out_dir: Path, write: Submit) -> str:
    """The decoded pixels, losslessly, named by their id: what a doctor reviews and what a review
    imports into the labelled pool, whatever happens to the inbox file meanwhile."""
    target = ScoringOutputs(out_dir).review_images / f"{image.image_id}.png"
    if not target.exists():
        write(_write_png, target, image.pixels)
    return target.relative_to(out_dir).as_posix()


def _write_png(target: Path, pixels: np.ndarray) -> None:
    """A copy of what the inbox file holds: not flushed to disk (after a crash, a review falls
    back to the inbox file, whose pixels it checks)."""
    write_bytes(target, encode_png(pixels), durable=False)


@functools.lru_cache(maxsize=2)
def _with_features(model):
    """The model with its features as a second output, built once per model."""
    return with_features(model)
