"""A trained project copied per test and scored once, for the review round trip and the audit."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from medcls import pipeline
from medcls.data.demo import make_demo_inbox


@pytest.fixture
def project(trained_project, tmp_path: Path):
    """A copy of the trained project, scored once with (nearly) every image sent to review."""
    root = tmp_path / "project"
    for part in ("params.yaml", "data/raw", "data/processed", "models"):
        source, target = trained_project.paths.root / part, root / part
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
    params = pipeline.open_project(root / "params.yaml").params
    copy = pipeline.project_of(root, params.model_copy(update={"score": params.score.model_copy(
        update={"confidence_threshold": 1.0})}))  # fmt: skip
    make_demo_inbox(copy.paths.raw, copy.paths.inbox, 6, seed=11)
    pipeline.score(copy)
    return copy
