"""Production measured on the candidate's validation images, so the gate compares like with like.

Each model sees the images prepared by its own input contract: the candidate's arrays when
production's preprocessing is the same, else the same images (by id) prepared from data/raw the
way production was trained.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medcls.catalog import RawData
from medcls.config import PreprocessConfig
from medcls.data.manifest import load_manifest
from medcls.data.preprocess import load_contract, load_split, prepare_files
from medcls.model.evaluate import classification_metrics
from medcls.registry.gate import Figures
from medcls.registry.models import RegisteredModel

VALIDATION = "val"


def candidate_figures(version: str, class_names: list[str], metrics: dict) -> Figures:
    """The candidate's validation figures, as evaluate measured them on its validation split."""
    val = metrics[VALIDATION]
    sensitivity = {name: figures["sensitivity"] for name, figures in val["per_class"].items()}
    return Figures(version, val["auc"], class_names, sensitivity, val["n"])


def figures_on_candidate_images(production: RegisteredModel, processed_dir: Path, raw_dir: Path) -> Figures:
    """Production's validation figures on the candidate's validation images."""
    candidate = load_contract(processed_dir)
    if production.class_names != candidate["class_names"]:
        return Figures(production.version, None, production.class_names)  # another task: the gate says so
    x, y, ids = load_split(processed_dir, VALIDATION)
    if production.preprocess != PreprocessConfig(**candidate["preprocess"]):
        files = load_manifest(raw_dir).set_index("image_id").loc[ids, "file"]
        x = prepare_files([RawData(raw_dir).image(file) for file in files], production.preprocess, "production on val")
    probabilities = production.model.predict(x.astype(np.float32), batch_size=256, verbose=0).astype(np.float64)
    measured = classification_metrics(y, probabilities, production.class_names, bins=15)
    sensitivity = {name: figures["sensitivity"] for name, figures in measured["per_class"].items()}
    return Figures(production.version, measured["auc"], production.class_names, sensitivity, len(y))
