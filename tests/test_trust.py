"""Auto labels you can trust, end to end with the real registry: each version carries its trust;
images of another data set are never auto-labelled; a drifting chunk goes to review; audits
that find errors stop a version's auto labels."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from pydicom.data import get_testdata_file

from medcls import pipeline
from medcls.data.demo import make_demo_inbox
from medcls.data.images import encode_png
from medcls.data.manifest import load_manifest
from medcls.model.trust import Trust
from medcls.registry import list_versions, load_production_model
from medcls.scoring.drift import MIN_IMAGES
from tests.helpers import SHARED_DATA, tiny_params, write_params

# Real images of other data sets: CT, MR, nuclear medicine and a segmentation, as pydicom ships them.
OTHER_GRAY = ["CT_small.dcm", "MR_small.dcm", "693_J2KI.dcm", "examples_overlay.dcm", "JPEG2000.dcm",
              "JPGExtended.dcm", "liver_1frame.dcm", "image_dfl.dcm"]  # fmt: skip


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    """A tiny synthetic project with enough calibration images (~140) for the gate to reject at 1 %."""
    params = tiny_params(data={"synthetic": {"patients": 160, "images_per_patient": [2, 4], "image_size": 32},
                               "calibration_fraction": 0.3}, train={"epochs": 4})  # fmt: skip
    project = pipeline.open_project(write_params(tmp_path_factory.mktemp("gated"), params))
    for step in (pipeline.ingest, pipeline.validate, pipeline.preprocess, pipeline.train, pipeline.evaluate):
        step(project)
    pipeline.register(project)
    return project


def _with_score(project, **settings):
    score = project.params.score.model_copy(update=settings)
    return pipeline.project_of(project.paths.root, project.params.model_copy(update={"score": score}))


def test_each_version_carries_its_trust_and_evaluate_says_what_it_would_auto_label(gated):
    production = load_production_model(gated.params.registry.model_name)
    assert production.trust is not None
    assert production.trust.guarantee == Trust.load(gated.paths.trust).guarantee
    assert len(production.trust.gate.calibration_scores) >= 100
    assert production.acquisition["channels"] == [1]
    metrics = pipeline.outcome(gated)["metrics"]
    assert {"auto_share", "auto_error", "out_of_distribution_share"} <= set(metrics["test"])
    (version,) = list_versions(gated.params.registry.model_name)
    assert version.auto_labels.startswith("none: no threshold certified")  # too few calibration images


def test_images_of_other_data_sets_are_never_auto_labelled(gated, tmp_path: Path):
    """Even with an uncertified threshold of 0 (every image like the training data is auto), none
    of another data set's images is: the acquisition check and the gate stop them one by one,
    and the drift alarm stops the chunk they came in."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in OTHER_GRAY:
        shutil.copy(get_testdata_file(name), inbox / name)
    rng = np.random.default_rng(0)
    # Colour photographs, to a model of gray images: enough of them for the drift tests without
    # the chest X-rays of ../shared/data.
    for index in range(MIN_IMAGES - len(OTHER_GRAY)):
        (inbox / f"colour{index}.png").write_bytes(encode_png(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)))
    for folder in ("chest_xray/test/NORMAL", "chest_xray/test/PNEUMONIA"):
        for path in sorted((SHARED_DATA / folder).glob("*.jpeg"))[:15] if (SHARED_DATA / folder).is_dir() else []:
            shutil.copy(path, inbox / path.name)
    project = _with_score(gated, confidence_threshold=0.0)
    result = pipeline.score(project, inbox, tmp_path / "out")
    rows = pd.read_csv(result.predictions_path, keep_default_na=False)
    assert len(rows) >= MIN_IMAGES and not (rows["decision"] == "auto").any(), rows[["path", "reason"]].to_string()
    assert (rows["decision"] == "out_of_distribution").mean() >= 0.8  # one by one, before the drift alarm
    assert result.report.drifted == 1
    colour = rows[rows["path"].str.contains("colour")]
    assert (colour["reason"] == "a colour image; the model learned from grayscale images").all()
    queue = pd.read_csv(result.review_path, keep_default_na=False)
    assert set(queue["image_id"]) == set(rows["image_id"])  # every one is a doctor's

    own = pipeline.score(project, make_demo_inbox(gated.paths.raw, tmp_path / "own", 20, seed=3)[0].parent,
                         tmp_path / "own-out")  # fmt: skip
    assert own.report.drifted == 0 and own.auto >= 18  # held-out images of its own data: at most a few rejected


def test_a_drifting_chunk_sends_its_auto_labels_to_review_with_what_a_doctor_needs(gated, tmp_path: Path):
    """Held-out images of its own data, slightly blurred (another device, say): most pass the gate
    one by one, together they are unlike the calibration images."""
    manifest = load_manifest(gated.paths.raw)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for file in manifest.loc[manifest["split"].isin(["val", "test"]), "file"][:60]:
        pixels = cv2.imread(str(gated.paths.raw / file), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(inbox / f"{Path(file).stem}.png"), cv2.GaussianBlur(pixels, (0, 0), 1.0))
    result = pipeline.score(_with_score(gated, confidence_threshold=0.0, heatmaps="review"), inbox, tmp_path / "out")
    assert result.report.drifted == 1, result.report.drift[0].p_values
    assert "DRIFT in 1 of 1" in result.summary()
    rows = pd.read_csv(result.predictions_path, keep_default_na=False)
    moved = rows[rows["reason"] == "drift"]
    assert len(moved) >= 20 and (moved["decision"] == "review").all()
    assert all((tmp_path / "out" / path).is_file() for path in [*moved["review_image"], *moved["heatmap"]])
    warned = pipeline.score(_with_score(gated, confidence_threshold=0.0, on_drift="warn"), inbox, tmp_path / "warn")
    assert warned.report.drifted == 1 and warned.auto >= 20


def test_audits_that_find_wrong_auto_labels_stop_the_versions_auto_labels(gated, tmp_path: Path):
    project = _with_score(gated, confidence_threshold=0.0, audit_fraction=1.0)
    name = project.params.registry.model_name
    make_demo_inbox(project.paths.raw, tmp_path / "inbox", 8, seed=5)
    first = pipeline.score(project, tmp_path / "inbox", project.paths.outputs)
    queue = pd.read_csv(first.review_path, keep_default_na=False)
    audited = queue[queue["reason"] == "audit"]
    assert len(audited) >= 3 and (audited["decision"] == "auto").all()
    other = {label: next(c for c in load_production_model(name).class_names if c != label) for label in
             audited["label"]}  # fmt: skip
    reviews = audited.assign(label=audited["label"].map(other), reviewer="dr.who")[["image_id", "label", "reviewer"]]
    reviews.to_csv(tmp_path / "reviews.csv", index=False)
    imported = pipeline.review_import(project, tmp_path / "reviews.csv")
    (verdict,) = imported.audits
    assert verdict.exceeded and verdict.wrong == verdict.audited == len(audited)
    assert next(v for v in list_versions(name) if v.production).auto_labels.startswith("suspended: ")

    make_demo_inbox(project.paths.raw, tmp_path / "more", 4, seed=6)
    later = pipeline.score(project, tmp_path / "more", tmp_path / "later")
    rows = pd.read_csv(later.predictions_path, keep_default_na=False)
    assert (rows["decision"] != "auto").all() and rows["reason"].str.startswith("auto labels suspended").any()
    assert "NO auto labels: audits suspended" in later.summary()


def test_new_guarantee_params_give_production_a_new_version_of_the_same_network(gated, tmp_path: Path):
    root = tmp_path / "project"
    for part in ("params.yaml", "data/raw", "data/processed", "models", "reports"):
        source, target = gated.paths.root / part, root / part
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
    params = gated.params.model_copy(update={"score": gated.params.score.model_copy(update={"max_auto_error": 0.1})})
    project = pipeline.project_of(root, params)
    pipeline.evaluate(project)
    registered = pipeline.register(project)
    assert registered.promoted and "its auto-label trust rebuilt" in registered.reason
    assert load_production_model(params.registry.model_name).trust.guarantee.alpha == 0.1
