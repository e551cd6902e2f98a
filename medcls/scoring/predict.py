"""Scoring one batch: the model's probabilities and features in one forward pass, the triage
columns, and for the rows a doctor will see, a heat map and the image itself as a PNG (pixels
only: no file name, no DICOM header)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from medcls.catalog import ScoringOutputs
from medcls.config import ScoreConfig
from medcls.data.images import encode_png
from medcls.model.network import logits_kernel, with_features
from medcls.registry.models import RegisteredModel
from medcls.scoring.heatmaps import class_activation_maps, heatmap_path, save_heatmap
from medcls.scoring.reader import ScannedImage
from medcls.scoring.triage import triage
from medcls.support.files import write_bytes

Submit = Callable[..., None]  # runs a file-writing job somewhere (medcls.support.parallel.background)


def score_batch(
    images: list[ScannedImage], production: RegisteredModel, cfg: ScoreConfig, out_dir: Path, write: Submit
) -> pd.DataFrame:
    """One row per image. Its heat maps and review images are written through `write` (threads
    beside the model's next batch): the caller waits for them before it saves the rows."""
    batch = np.stack([image.prepared for image in images]).astype(np.float32)
    # predict_on_batch: model.predict's per-call set-up costs as much as predicting 200 images here.
    probabilities, features = _with_features(production.model).predict_on_batch(batch)
    probabilities = probabilities.astype(np.float64)
    rows = pd.DataFrame(
        {
            "image_id": [image.image_id for image in images],
            "path": [image.path for image in images],
            "frame": ["" if image.frame is None else str(image.frame) for image in images],
            **triage(probabilities, production.class_names, cfg.confidence_threshold),
            "model_version": production.version,
            "scored_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    review = rows["decision"].to_numpy() == "review"
    rows["review_image"] = [_review_image(image, out_dir, write) if wanted else "" for image, wanted in
                            zip(images, review, strict=True)]  # fmt: skip
    wanted = {"all": np.ones(len(rows), bool), "review": review}.get(cfg.heatmaps)
    rows["heatmap"] = ""
    if wanted is not None and wanted.any():
        classes = probabilities[wanted].argmax(axis=1)
        maps = class_activation_maps(features[wanted], logits_kernel(production.model), classes)
        paths = [heatmap_path(out_dir, image_id, production.version) for image_id in rows.loc[wanted, "image_id"]]
        for path, image, heat in zip(paths, batch[wanted], maps, strict=True):
            write(save_heatmap, path, image, heat)
        rows.loc[wanted, "heatmap"] = [path.relative_to(out_dir).as_posix() for path in paths]
    return rows


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
