"""Batch scoring with the production model: one row per image, triage, reruns, quarantine."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from medcls.config import ScoreConfig
from medcls.errors import DataError, RegistryError, ScoringBusy
from medcls.ingest import load_manifest
from medcls.preprocess import load_split
from medcls.score import entropy, load_production_model, make_demo_inbox, score_inbox, scoring_lock
from tests.support import write_params

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
    if queue is not None:  # the most uncertain first
        assert len(queue) == 5 and queue["entropy"].is_monotonic_decreasing


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


def test_review_rows_get_uncertainty_and_a_heat_map(trained_project, production, tmp_path: Path):
    make_demo_inbox(trained_project.raw, tmp_path / "inbox", 6, seed=4)
    out = tmp_path / "out"
    cfg = ScoreConfig(confidence_threshold=1.0, review_order="margin")
    result = score_inbox(cfg, production, tmp_path / "inbox", out)
    queue = pd.read_csv(result.review_path, keep_default_na=False)
    assert queue["margin"].is_monotonic_increasing and (queue["reason"] == "uncertain").all()
    probabilities = queue[[f"prob_{name}" for name in production.class_names]].to_numpy()
    np.testing.assert_allclose(queue["entropy"], entropy(probabilities), rtol=1e-6)
    assert ((queue["entropy"] >= 0) & (queue["entropy"] <= 1)).all()
    for heatmap in queue["heatmap"]:
        overlay = cv2.imread(str(out / heatmap))
        assert overlay is not None and overlay.shape == (224, 224, 3)  # enlarged for a person to read
    tasks = json.loads((out / "review_tasks.json").read_text())
    assert len(tasks) == len(queue) >= 4  # a confidence of exactly 1.0 would still be auto
    assert tasks[0]["data"]["heatmap"].startswith("/data/local-files/?d=out/heatmaps/")
    assert tasks[0]["predictions"][0]["result"][0]["value"]["choices"] == [queue["label"][0]]
    config = (out / "label_studio.xml").read_text()
    assert all(f'<Choice value="{name}"/>' in config for name in production.class_names)


def test_auto_rows_get_no_heat_map_unless_asked(trained_project, production, tmp_path: Path):
    make_demo_inbox(trained_project.raw, tmp_path / "inbox", 3, seed=5)
    result = score_inbox(ScoreConfig(confidence_threshold=0.0), production, tmp_path / "inbox", tmp_path / "plain")
    assert (pd.read_csv(result.predictions_path, keep_default_na=False)["heatmap"] == "").all()
    cfg = ScoreConfig(confidence_threshold=0.0, heatmaps="all")
    result = score_inbox(cfg, production, tmp_path / "inbox", tmp_path / "all")
    assert (pd.read_csv(result.predictions_path, keep_default_na=False)["heatmap"] != "").all()


def test_a_quarantine_recorded_but_never_moved_is_redone_once(trained_project, production, tmp_path: Path):
    """The state a run killed between recording a quarantine and moving the file leaves behind."""
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    (inbox / "broken.png").write_bytes(b"\x89PNG not really")
    out.mkdir()
    never_moved = {"path": str(inbox / "broken.png"), "moved_to": str(out / "quarantine" / "gone-broken.png")}
    pd.DataFrame([never_moved | {"reason": "x", "quarantined_at": "2026-11-24T00:00:00+00:00"}]).to_csv(
        out / "quarantine.csv", index=False
    )
    assert score_inbox(ScoreConfig(), production, inbox, out).quarantined == 1
    quarantine = pd.read_csv(out / "quarantine.csv")
    assert len(quarantine) == 1 and Path(quarantine["moved_to"][0]).is_file()
    assert not (inbox / "broken.png").exists()


def test_heat_maps_point_at_the_evidence():
    """Two feature channels, a blob in each; only the top-left one's channel counts for class 1."""
    from medcls.explain import class_activation_maps

    features = np.zeros((1, 8, 8, 2), np.float32)
    features[0, :4, :4, 0] = 1.0  # evidence for class 1
    features[0, 4:, 4:, 1] = 1.0  # bright, but irrelevant to class 1
    kernel = np.array([[-1.0, 1.0], [0.0, 0.0]], np.float32)  # class 1 <- channel 0 only
    heat = class_activation_maps(features, kernel, np.array([1]))[0]
    assert heat[:4, :4].min() == 1.0 and heat[4:, 4:].max() == 0.0


def test_heat_maps_are_grad_cam_of_the_classifier():
    """The class activation map from the forward pass equals Grad-CAM computed with gradients."""
    import keras
    import tensorflow as tf

    from medcls.config import TrainConfig
    from medcls.explain import class_activation_maps
    from medcls.model import FEATURES_LAYER, LOGITS_LAYER, build_classifier, logits_kernel, with_features

    model = build_classifier(TrainConfig(widths=[8, 16], dropout=0.5), (16, 16, 1), 3, [0.5], [0.05])
    images = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 1)).astype(np.float32)
    classes = np.array([0, 1, 2, 1])
    explainer = keras.Model(
        model.inputs, [model.get_layer(FEATURES_LAYER).output, model.get_layer(LOGITS_LAYER).output]
    )
    with tf.GradientTape() as tape:
        features, logits = explainer(tf.convert_to_tensor(images), training=False)
        score = tf.gather(logits, classes, axis=1, batch_dims=1)
    weights = tf.reduce_mean(tape.gradient(score, features), axis=(1, 2), keepdims=True)
    grad_cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1)).numpy()
    grad_cam /= np.maximum(grad_cam.max(axis=(1, 2), keepdims=True), 1e-12)

    _, forward_features = with_features(model).predict_on_batch(images)
    np.testing.assert_allclose(
        class_activation_maps(forward_features, logits_kernel(model), classes), grad_cam, atol=1e-5
    )


def test_a_second_run_on_the_same_outputs_is_refused_while_one_runs(trained_project, production, tmp_path: Path):
    make_demo_inbox(trained_project.raw, tmp_path / "inbox", 2, seed=6)
    with scoring_lock(tmp_path / "out"), pytest.raises(ScoringBusy, match=f"pid {os.getpid()}"):
        score_inbox(ScoreConfig(), production, tmp_path / "inbox", tmp_path / "out")
    assert score_inbox(ScoreConfig(), production, tmp_path / "inbox", tmp_path / "out").scored == 2


def test_a_killed_run_and_its_restart_score_every_image_exactly_once(trained_project, tmp_path: Path):
    """SIGKILL mid-run (twice), then let a run finish: every image has exactly one row."""
    params = yaml.safe_load((trained_project.root / "params.yaml").read_text())
    params["score"] |= {"chunk_size": 4, "heatmaps": "all", "confidence_threshold": 0.9}
    params_path = write_params(tmp_path / "project", params)
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    copied = make_demo_inbox(trained_project.raw, inbox, 40, seed=7)
    command = [sys.executable, "-m", "medcls", "--params", str(params_path), "score", "--inbox", str(inbox),
               "--output", str(out)]  # fmt: skip
    for rows_before_kill in (1, 12):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while _rows(out) < rows_before_kill and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
    killed_rows = _rows(out)
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert not list((out / "predictions.pending").glob("*"))  # every saved chunk folded in
    predictions = pd.read_csv(out / "predictions.csv")
    assert 0 < killed_rows < len(predictions)  # the kills did land mid-run
    assert len(predictions) == predictions["image_id"].nunique() == len(copied)  # each image, once
    assert sorted(Path(p).name for p in predictions["path"]) == sorted(p.name for p in copied)


def _rows(out: Path) -> int:
    """Rows saved so far: predictions.csv and the chunks saved since (still pending)."""
    tables = [out / "predictions.csv", *(out / "predictions.pending").glob("*.csv")]
    try:
        return sum(len(pd.read_csv(table)) for table in tables if table.exists())
    except (FileNotFoundError, pd.errors.EmptyDataError):  # a part folded in meanwhile
        return 0
