"""Helpers for tests: tiny projects and the shared real data."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def tiny_params(**sections: dict) -> dict:
    """A few hundred 28x28 synthetic images and a one-epoch network: the pipeline in seconds."""
    params = {
        "seed": 7,
        "data": {"source": "synthetic", "synthetic": {"patients": 100, "images_per_patient": [2, 4], "image_size": 32}},
        "validate": {"min_images_per_class": 1},
        "preprocess": {"image_size": 28},
        "train": {
            "epochs": 1,
            "batch_size": 32,
            "widths": [8, 16],
            "early_stopping_patience": 1,
            "experiment": "tests",
        },
        # A one-epoch model misses whole classes: let the gate promote it anyway.
        "registry": {"model_name": f"medcls-test-{uuid.uuid4().hex[:8]}", "min_class_sensitivity": 0.0},
        "score": {"demo_images": 6, "settle_seconds": 0},  # tests write files and score them at once
    }
    for section, values in sections.items():
        params[section] = {**params.get(section, {}), **values} if isinstance(values, dict) else values
    return params


def write_params(folder: Path, params: dict, complete: bool = True) -> Path:
    """params.yaml with the defaults filled in (DVC needs every section a stage tracks); with
    `complete=False`, exactly `params`, so broken values reach the code under test."""
    from medcls.config import Params

    if complete:
        params = Params.model_validate(params).model_dump(by_alias=True, mode="json")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def requires_shared_data(name: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        not (SHARED_DATA / name).exists(), reason=f"{SHARED_DATA / name} is absent (it sits beside a developer clone)"
    )


def train_on_processed(project, cfg, folder: Path, seed: int):
    """Train `cfg` on a trained project's processed arrays into `folder` (its own MLflow run)."""
    from medcls.model.train import train_model

    return train_model(
        cfg,
        project.paths.processed,
        folder / "models",
        folder / "history.csv",
        seed=seed,
        run_params={},
        data_versions={"data/raw": project.paths.raw},
    )
