"""Batch scoring with the production model: one row per image, triage, reruns, quarantine."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medcls.config import ScoreConfig
from medcls.errors import DataError, RegistryError
from medcls.ingest import load_manifest
from medcls.preprocess import load_split
from medcls.score import load_production_model, make_demo_inbox, score_inbox

REQUIRED_COLUMNS = ["image_id", "path", "label", "confidence", "decision", "model_version", "scored_at"]


@pytest.fixture(scope="module")
def production(trained_project):
    return load_production_model(trained_project.params.registry.model_name)


def test_scoring_writes_one_row_per_image_and_skips_them_next_time(trained_project, production, tmp_path: Path):
    inbox = tmp_path / "inbox"
    copied = make_demo_inbox(trained_project.raw, inbox, 7, seed=1)
    shutil.copy(copied[0], inbox / "same-pixels-again.png")
    result = score_inbox(ScoreConfig(), production, inbox, tmp_path / "out")
    predictions = pd.read_csv(result.predictions_path, dtype={"model_version": str})
    assert (result.scored, result.skipped, result.quarantined) == (7, 1, 0)
    assert len(predictions) == 7 and predictions["image_id"].is_unique
    assert set(REQUIRED_COLUMNS) <= set(predictions.columns)
    probabilities = predictions[[f"prob_{name}" for name in production.class_names]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)
    assert (predictions["model_version"] == production.version).all()

    again = score_inbox(ScoreConfig(), production, inbox, tmp_path / "out")
    assert (again.scored, again.skipped) == (0, 8)
    assert len(pd.read_csv(again.predictions_path)) == 7


def test_scores_match_the_evaluated_model(trained_project, production, tmp_path: Path):
    """Scoring files through the registry model reproduces the predictions on the processed arrays."""
    x, _, ids = load_split(trained_project.processed, "test")
    files = load_manifest(trained_project.raw).set_index("image_id").loc[ids[:5], "file"]
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for file in files:
        shutil.copy(trained_project.raw / file, inbox)
    result = score_inbox(ScoreConfig(), production, inbox, tmp_path / "out")
    scored = pd.read_csv(result.predictions_path).set_index("image_id").loc[ids[:5]]
    expected = production.model.predict(x[:5].astype(np.float32), verbose=0)
    columns = [f"prob_{name}" for name in production.class_names]
    np.testing.assert_allclose(scored[columns].to_numpy(), expected, atol=1e-5)


@pytest.mark.parametrize(("threshold", "decision"), [(0.0, "auto"), (1.0, "review")])
def test_threshold_decides_auto_or_review(trained_project, production, tmp_path: Path, threshold, decision):
    make_demo_inbox(trained_project.raw, tmp_path / "inbox", 5, seed=2)
    result = score_inbox(ScoreConfig(confidence_threshold=threshold), production, tmp_path / "inbox", tmp_path / "out")
    assert set(pd.read_csv(result.predictions_path)["decision"]) == {decision}
    queue = pd.read_csv(result.review_path) if decision == "review" else None
    if queue is not None:
        assert len(queue) == 5 and queue["confidence"].is_monotonic_increasing


def test_unreadable_files_are_quarantined_and_the_run_goes_on(trained_project, production, tmp_path: Path):
    inbox = tmp_path / "inbox"
    make_demo_inbox(trained_project.raw, inbox, 3, seed=3)
    (inbox / "scan.png").write_bytes(b"not really a png")
    (inbox / "report.pdf").write_bytes(b"%PDF-1.4")
    result = score_inbox(ScoreConfig(), production, inbox, tmp_path / "out")
    assert (result.scored, result.quarantined) == (3, 2)
    assert not (inbox / "scan.png").exists()
    quarantine = pd.read_csv(tmp_path / "out" / "quarantine.csv")
    assert sorted(Path(p).name for p in quarantine["path"]) == ["report.pdf", "scan.png"]
    assert all(Path(moved).exists() for moved in quarantine["moved_to"])
    reasons = dict(zip(quarantine["path"].map(lambda p: Path(p).name), quarantine["reason"], strict=True))
    assert reasons["report.pdf"] == "not an image file type (.pdf)"
    assert reasons["scan.png"].startswith("not a decodable image")


def test_missing_inbox_is_a_clear_error(production, tmp_path: Path):
    with pytest.raises(DataError, match="is not a folder"):
        score_inbox(ScoreConfig(), production, tmp_path / "typo", tmp_path / "out")


def test_no_production_model_is_a_clear_error():
    with pytest.raises(RegistryError, match="has no 'production' version"):
        load_production_model("a-model-nobody-registered")
