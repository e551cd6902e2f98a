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
from medcls.data.demo import make_demo_inbox
from medcls.data.manifest import load_manifest
from medcls.data.preprocess import load_split
from medcls.errors import DataError, RegistryError, ScoringBusy
from medcls.scoring import entropy, load_production_model, score_inbox, scoring_lock
from medcls.scoring.run import even_chunks
from tests.helpers import write_params

REQUIRED_COLUMNS = ["image_id", "path", "label", "confidence", "decision", "model_version", "scored_at"]


@pytest.fixture(scope="module")
def production(trained_project):
    return load_production_model(trained_project.params.registry.model_name)


def test_scoring_writes_one_row_per_image_and_skips_them_next_time(trained_project, production, tmp_path: Path):
    inbox = tmp_path / "inbox"
    copied = make_demo_inbox(trained_project.paths.raw, inbox, 7, seed=1)
    shutil.copy(copied[0], inbox / "same-pixels-again.png")
    result = score_inbox(ScoreConfig(settle_seconds=0), production, inbox, tmp_path / "out")
    predictions = pd.read_csv(result.predictions_path, dtype={"model_version": str})
    assert (result.scored, result.skipped, result.quarantined) == (7, 1, 0)
    assert len(predictions) == 7 and predictions["image_id"].is_unique
    assert set(REQUIRED_COLUMNS) <= set(predictions.columns)
    probabilities = predictions[[f"prob_{name}" for name in production.class_names]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)
    assert (predictions["model_version"] == production.version).all()

    again = score_inbox(ScoreConfig(settle_seconds=0), production, inbox, tmp_path / "out")
    assert (again.scored, again.skipped) == (0, 8)
    assert len(pd.read_csv(again.predictions_path)) == 7


def test_scores_match_the_evaluated_model(trained_project, production, tmp_path: Path):
    """Scoring files through the registry model reproduces the predictions on the processed arrays."""
    x, _, ids = load_split(trained_project.paths.processed, "test")
    files = load_manifest(trained_project.paths.raw).set_index("image_id").loc[ids[:5], "file"]
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for file in files:
        shutil.copy(trained_project.paths.raw / file, inbox)
    result = score_inbox(ScoreConfig(settle_seconds=0), production, inbox, tmp_path / "out")
    scored = pd.read_csv(result.predictions_path).set_index("image_id").loc[ids[:5]]
    expected = production.model.predict(x[:5].astype(np.float32), verbose=0)
    columns = [f"prob_{name}" for name in production.class_names]
    np.testing.assert_allclose(scored[columns].to_numpy(), expected, atol=1e-5)


def test_a_row_is_auto_exactly_where_its_confidence_reaches_the_threshold(trained_project, production, tmp_path: Path):
    """Checked as a rule on every row: a float32 softmax can round to exactly 1.0, which reaches
    even a threshold of 1.0."""
    make_demo_inbox(trained_project.paths.raw, tmp_path / "inbox", 12, seed=2)
    everything = score_inbox(
        ScoreConfig(settle_seconds=0, confidence_threshold=0.0), production, tmp_path / "inbox", tmp_path / "all"
    )
    confidence = pd.read_csv(everything.predictions_path)["confidence"]
    assert everything.auto == 12 and confidence.max() > confidence.min()
    middle = (confidence.min() + confidence.max()) / 2
    for number, threshold in enumerate((middle, 1.0)):
        cfg = ScoreConfig(settle_seconds=0, confidence_threshold=threshold)
        result = score_inbox(cfg, production, tmp_path / "inbox", tmp_path / f"out-{number}")
        predictions = pd.read_csv(result.predictions_path)
        expected = np.where(predictions["confidence"] >= threshold, "auto", "review")
        assert predictions["decision"].tolist() == expected.tolist()
        assert (result.auto, result.review) == ((expected == "auto").sum(), (expected == "review").sum())
        queue = pd.read_csv(result.review_path)  # the review rows, the most uncertain first
        assert sorted(queue["image_id"]) == sorted(predictions.loc[expected == "review", "image_id"])
        assert queue["entropy"].is_monotonic_decreasing
    assert 0 < (confidence >= middle).sum() < 12  # the middle threshold did split the rows


def test_unreadable_files_are_quarantined_and_the_run_goes_on(trained_project, production, tmp_path: Path):
    inbox = tmp_path / "inbox"
    make_demo_inbox(trained_project.paths.raw, inbox, 3, seed=3)
    (inbox / "scan.png").write_bytes(b"not really a png")
    (inbox / "report.pdf").write_bytes(b"%PDF-1.4")
    result = score_inbox(ScoreConfig(settle_seconds=0), production, inbox, tmp_path / "out")
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
        score_inbox(ScoreConfig(settle_seconds=0), production, tmp_path / "typo", tmp_path / "out")


def test_no_production_model_is_a_clear_error():
    with pytest.raises(RegistryError, match="has no 'production' version"):
        load_production_model("a-model-nobody-registered")


def test_review_rows_get_uncertainty_and_a_heat_map(trained_project, production, tmp_path: Path):
    make_demo_inbox(trained_project.paths.raw, tmp_path / "inbox", 6, seed=4)
    out = tmp_path / "out"
    cfg = ScoreConfig(settle_seconds=0, confidence_threshold=1.0, review_order="margin")
    result = score_inbox(cfg, production, tmp_path / "inbox", out)
    queue = pd.read_csv(result.review_path, keep_default_na=False)
    assert queue["margin"].is_monotonic_increasing and (queue["reason"] == "uncertain").all()
    probabilities = queue[[f"prob_{name}" for name in production.class_names]].to_numpy()
    np.testing.assert_allclose(queue["entropy"], entropy(probabilities), rtol=1e-6)
    for heatmap in queue["heatmap"]:
        overlay = cv2.imread(str(out / heatmap))
        assert overlay is not None and overlay.shape == (224, 224, 3)  # enlarged for a person to read
    predictions = pd.read_csv(result.predictions_path)
    assert len(queue) == (predictions["confidence"] < 1.0).sum() > 0  # a confidence of exactly 1.0 is auto
    tasks = json.loads((out / "review_tasks.json").read_text())
    assert len(tasks) == len(queue)
    assert tasks[0]["data"]["heatmap"].startswith("/data/local-files/?d=out/heatmaps/")
    assert tasks[0]["predictions"][0]["result"][0]["value"]["choices"] == [queue["label"][0]]
    config = (out / "label_studio.xml").read_text()
    assert all(f'<Choice value="{name}"/>' in config for name in production.class_names)


def test_auto_rows_get_no_heat_map_unless_asked(trained_project, production, tmp_path: Path):
    make_demo_inbox(trained_project.paths.raw, tmp_path / "inbox", 3, seed=5)
    result = score_inbox(
        ScoreConfig(settle_seconds=0, confidence_threshold=0.0), production, tmp_path / "inbox", tmp_path / "plain"
    )
    assert (pd.read_csv(result.predictions_path, keep_default_na=False)["heatmap"] == "").all()
    cfg = ScoreConfig(settle_seconds=0, confidence_threshold=0.0, heatmaps="all")
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
    assert score_inbox(ScoreConfig(settle_seconds=0), production, inbox, out).quarantined == 1
    quarantine = pd.read_csv(out / "quarantine.csv")
    assert len(quarantine) == 1 and Path(quarantine["moved_to"][0]).is_file()
    assert not (inbox / "broken.png").exists()


def test_a_second_run_on_the_same_outputs_is_refused_while_one_runs(trained_project, production, tmp_path: Path):
    make_demo_inbox(trained_project.paths.raw, tmp_path / "inbox", 2, seed=6)
    with scoring_lock(tmp_path / "out"), pytest.raises(ScoringBusy, match=f"pid {os.getpid()}"):
        score_inbox(ScoreConfig(settle_seconds=0), production, tmp_path / "inbox", tmp_path / "out")
    assert score_inbox(ScoreConfig(settle_seconds=0), production, tmp_path / "inbox", tmp_path / "out").scored == 2


def test_a_killed_run_and_its_restart_score_every_image_exactly_once(trained_project, tmp_path: Path):
    """SIGKILL mid-run (twice, each after some chunks were saved), then let a run finish: every
    image has exactly one row. 240 images in chunks of 4 keep each run busy long enough for the
    kill to land mid-run on any machine; the test checks that it did."""
    params = yaml.safe_load((trained_project.paths.root / "params.yaml").read_text())
    params["score"] |= {"chunk_size": 4, "heatmaps": "all", "confidence_threshold": 0.9}
    params_path = write_params(tmp_path / "project", params)
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    written = _distinct_images(trained_project.paths.raw, inbox, 240)
    command = [sys.executable, "-m", "medcls", "--params", str(params_path), "score", "--inbox", str(inbox),
               "--output", str(out)]  # fmt: skip
    for parts_before_kill in (1, 3):
        earlier = _pending_parts(out)
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 180
        while len(_pending_parts(out) - earlier) < parts_before_kill and process.poll() is None:
            assert time.monotonic() < deadline, "no chunk saved within 3 minutes"
            time.sleep(0.01)
        assert process.poll() is None, "the run ended before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait()
    killed_rows = _rows(out)
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert not list((out / "predictions.pending").glob("*"))  # every saved chunk folded in
    predictions = pd.read_csv(out / "predictions.csv")
    assert 4 <= killed_rows < len(predictions)  # the kills landed after some chunks, before the end
    assert len(predictions) == predictions["image_id"].nunique() == len(written)  # each image, once
    assert sorted(Path(p).name for p in predictions["path"]) == sorted(p.name for p in written)


def _distinct_images(raw_dir: Path, inbox: Path, count: int) -> list[Path]:
    """`count` PNGs with distinct pixels: test images, each with a little noise of its own."""
    manifest = load_manifest(raw_dir)
    sources = [cv2.imread(str(raw_dir / file), cv2.IMREAD_UNCHANGED) for file in manifest["file"][:20]]
    rng = np.random.default_rng(0)
    inbox.mkdir(parents=True)
    written = []
    for number in range(count):
        noisy = sources[number % len(sources)].astype(np.int16) + rng.integers(-3, 4, sources[0].shape)
        written.append(inbox / f"scan-{number:04d}.png")
        cv2.imwrite(str(written[-1]), np.clip(noisy, 0, 255).astype(np.uint8))
    return written


def _pending_parts(out: Path) -> set[str]:
    """The chunks saved and not yet folded into predictions.csv."""
    return {part.name for part in (out / "predictions.pending").glob("*.csv")}


def _rows(out: Path) -> int:
    """Rows saved: predictions.csv and the chunks saved since (still pending)."""
    tables = [out / "predictions.csv", *(out / "predictions.pending").glob("*.csv")]
    return sum(len(pd.read_csv(table)) for table in tables if table.exists())


@pytest.mark.parametrize(
    ("count", "sizes"), [(0, []), (5, [5]), (512, [512]), (618, [309, 309]), (1025, [341, 342, 342])]
)
def test_chunks_are_even_so_that_no_drift_test_gets_a_sliver(count: int, sizes: list[int]):
    chunks = even_chunks(list(range(count)), 512)
    assert [len(chunk) for chunk in chunks] == sizes
    assert [item for chunk in chunks for item in chunk] == list(range(count))
