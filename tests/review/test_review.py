"""The review round trip: queue out (CSV, Label Studio), doctors' labels back into training."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from medcls import pipeline
from medcls.data.manifest import load_manifest
from medcls.data.splits import split_by_patient
from medcls.errors import DataError


def test_reviewed_labels_join_training_and_a_doctor_overrides_the_source(project, tmp_path: Path):
    queue = pd.read_csv(project.paths.outputs / "review_queue.csv", keep_default_na=False)
    class_names = [c.removeprefix("prob_") for c in queue.columns if c.startswith("prob_")]
    manifest = load_manifest(project.paths.raw).set_index("image_id")
    first, second = queue["image_id"][0], queue["image_id"][1]
    corrected = next(name for name in class_names if name != manifest.loc[first, "label"])
    reviews = pd.DataFrame(
        {"image_id": [first, second], "label": [corrected, manifest.loc[second, "label"]], "reviewer": "dr.house"}
    )
    reviews.to_csv(tmp_path / "reviewed.csv", index=False)

    imported = pipeline.review_import(project, tmp_path / "reviewed.csv")
    # A float32 softmax can round to exactly 1.0, which reaches even a threshold of 1.0.
    auto = (pd.read_csv(project.paths.outputs / "predictions.csv")["decision"] == "auto").sum()
    assert (imported.added, imported.auto_added, imported.total) == (2, auto, 2 + auto)
    pool = pd.read_csv(project.paths.reviewed / "labels.csv", keep_default_na=False)
    doctor = pool[pool["label_source"] == "doctor"]
    assert len(doctor) == 2 and set(doctor["reviewer"]) == {"dr.house"}
    assert all((project.paths.reviewed / path).is_file() for path in pool["path"])

    pipeline.ingest(project)
    after = load_manifest(project.paths.raw)
    from_pool = after[after["origin"].str.startswith("reviewed/")].set_index("image_id")
    assert from_pool.loc[first, "label"] == corrected
    # The synthetic source gives no splits, so every image, reviewed ones too, is split by patient;
    # a reviewed image is a patient of its own.
    data = project.params.data
    fractions = {"test": data.test_fraction, "val": data.val_fraction}
    by_patient = split_by_patient(after["patient_id"], fractions)
    assert after["split"].tolist() == by_patient.tolist()
    assert (after["patient_id"] == from_pool.loc[first, "patient_id"]).sum() == 1
    assert (after["image_id"] == first).sum() == 1  # the source's differing label gave way
    duplicates = pd.read_csv(project.paths.raw / "duplicates.csv")
    assert duplicates.loc[duplicates["image_id"] == first, "kept"].str.startswith("reviewed/").all()


def test_label_studio_export_round_trip_and_auto_labels(project, tmp_path: Path):
    tasks = json.loads((project.paths.outputs / "review_tasks.json").read_text())
    task = tasks[0]
    assert task["data"]["image"].startswith("/data/local-files/?d=data/inbox/")
    label = task["predictions"][0]["result"][0]["value"]["choices"][0]
    task["annotations"] = [
        {
            "completed_by": {"email": "radiologist@example.org"},
            "updated_at": "2026-11-24T09:30:00Z",
            "result": [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}],
        }
    ]
    (tmp_path / "export.json").write_text(json.dumps([task, tasks[1]]))  # the second task was not annotated
    predictions = pd.read_csv(project.paths.outputs / "predictions.csv", dtype={"model_version": str})
    predictions.loc[predictions["image_id"] != task["data"]["image_id"], "decision"] = "auto"
    predictions.to_csv(project.paths.outputs / "predictions.csv", index=False)

    imported = pipeline.review_import(project, tmp_path / "export.json")
    assert (imported.added, imported.corrected, imported.auto_added) == (1, 0, 5)
    pool = pd.read_csv(project.paths.reviewed / "labels.csv", keep_default_na=False).set_index("image_id")
    assert pool.loc[task["data"]["image_id"], "reviewer"] == "radiologist@example.org"
    assert (pool["label_source"] == "auto").sum() == 5

    # The doctor's label is in training; auto labels stay out unless params allow them.
    pipeline.ingest(project)
    manifest = load_manifest(project.paths.raw)
    assert manifest.set_index("image_id").loc[task["data"]["image_id"], "label"] == label
    assert not _from_auto_labels(manifest["origin"]).any()
    data = project.params.data.model_copy(update={"auto_label_min_confidence": 0.0})
    allowed = pipeline.project_of(project.paths.root, project.params.model_copy(update={"data": data}))
    pipeline.ingest(allowed)
    joined = _from_auto_labels(load_manifest(allowed.paths.raw)["origin"]).sum()
    # The demo inbox holds copies of source images: an auto label that agrees with the source is a
    # duplicate, one that disagrees is outvoted by it; either way it is listed, never lost.
    listed = _from_auto_labels(pd.read_csv(allowed.paths.raw / "duplicates.csv")["origin"]).sum()
    assert joined + listed == 5


def _from_auto_labels(origins: pd.Series) -> pd.Series:
    return origins.str.startswith("auto-labelled/")


def test_reviews_with_unknown_labels_or_images_are_refused(project, tmp_path: Path):
    image_id = pd.read_csv(project.paths.outputs / "predictions.csv")["image_id"][0]
    pd.DataFrame({"image_id": [image_id], "label": ["unicorn"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match="'unicorn'"):
        pipeline.review_import(project, tmp_path / "bad.csv")
    pd.DataFrame({"image_id": ["f" * 64], "label": ["normal"]}).to_csv(tmp_path / "unknown.csv", index=False)
    with pytest.raises(DataError, match="never scored"):
        pipeline.review_import(project, tmp_path / "unknown.csv")
    assert not (project.paths.reviewed / "labels.csv").exists()  # nothing half-imported


def test_reviews_of_audit_rows_import_without_any_predictions(project, tmp_path: Path):
    pipeline.audit(project)
    (project.paths.outputs / "predictions.csv").unlink()  # e.g. an audit before the first scoring run
    audit = pd.read_csv(project.paths.outputs / "label_audit.csv", keep_default_na=False)
    flagged = audit.iloc[0]
    reviews = pd.DataFrame({"image_id": [flagged["image_id"]], "label": [flagged["suggested_label"]]})
    reviews.to_csv(tmp_path / "audit-reviewed.csv", index=False)
    imported = pipeline.review_import(project, tmp_path / "audit-reviewed.csv")
    assert imported.added == 1
    pool = pd.read_csv(project.paths.reviewed / "labels.csv", keep_default_na=False)
    assert pool["label"].tolist() == [flagged["suggested_label"]]
