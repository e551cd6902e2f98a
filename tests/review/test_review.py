"""The review round trip: queue out (CSV, Label Studio), doctors' labels back into training."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pandas as pd
import pytest

from medcls import pipeline
from medcls.data.images import image_id
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
    fractions = {"test": data.test_fraction, "val": data.val_fraction, "calibration": data.calibration_fraction}
    by_patient = split_by_patient(after["patient_id"], fractions)
    assert after["split"].tolist() == by_patient.tolist()
    assert (after["patient_id"] == from_pool.loc[first, "patient_id"]).sum() == 1
    assert (after["image_id"] == first).sum() == 1  # the source's differing label gave way
    duplicates = pd.read_csv(project.paths.raw / "duplicates.csv")
    assert duplicates.loc[duplicates["image_id"] == first, "kept"].str.startswith("reviewed/").all()


def test_label_studio_export_round_trip_and_auto_labels(project, tmp_path: Path):
    tasks = json.loads((project.paths.outputs / "review_tasks.json").read_text())
    task = tasks[0]
    # Label Studio is shown the scored pixels as a PNG named by id: no inbox file name, no DICOM header.
    assert task["data"]["image"] == f"/data/local-files/?d=outputs/review_images/{task['data']['image_id']}.png"
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


def test_a_file_with_labels_outside_the_task_is_refused_whole(project, tmp_path: Path):
    image_id = pd.read_csv(project.paths.outputs / "predictions.csv")["image_id"][0]
    pd.DataFrame({"image_id": [image_id], "label": ["unicorn"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match="'unicorn'"):
        pipeline.review_import(project, tmp_path / "bad.csv")
    assert not (project.paths.reviewed / "labels.csv").exists()  # nothing half-imported


def test_bad_rows_are_skipped_and_reported_and_no_label_lands_on_other_pixels(project, tmp_path: Path):
    outputs = project.paths.outputs
    predictions = pd.read_csv(outputs / "predictions.csv", dtype=str, keep_default_na=False)
    review = predictions[predictions["review_image"] != ""].reset_index(drop=True)
    good, tampered, vanished, damaged_copy = review["image_id"][:4]
    # One image's review copy and inbox file are both overwritten with other pixels (what a
    # doctor saw is nowhere any more); another is gone for good; a third lost only its review
    # copy, so its inbox file (whose pixels are checked) stands in.
    other = cv2.imread(str(outputs / review["review_image"][2]), cv2.IMREAD_UNCHANGED)
    for path in (outputs / review["review_image"][1], Path(review["path"][1])):
        cv2.imwrite(str(path), 255 - other)
    (outputs / review["review_image"][2]).unlink()
    Path(review["path"][2]).unlink()
    (outputs / review["review_image"][3]).write_bytes(b"\x89PNG cut short")
    # Auto labels whose file moved away meanwhile, under a name that is not UTF-8.
    moved_auto = predictions["image_id"].isin(review["image_id"][4:6])
    predictions.loc[moved_auto, ["decision", "review_image", "path"]] = ["auto", "", "/gone/scan-\\xff.png"]
    predictions.to_csv(outputs / "predictions.csv", index=False)
    labels = predictions.set_index("image_id")["label"]
    reviewed = [good, tampered, vanished, damaged_copy]
    reviews = pd.DataFrame({"image_id": [*reviewed, "f" * 64], "label": [*labels[reviewed], labels[good]]})
    reviews.to_csv(tmp_path / "reviewed.csv", index=False)

    imported = pipeline.review_import(project, tmp_path / "reviewed.csv")
    auto_rows = int((predictions["decision"] == "auto").sum())
    assert auto_rows >= 2
    assert (imported.added, imported.auto_added, imported.skipped) == (2, 0, 3 + auto_rows)
    report = pd.read_csv(imported.report).set_index("image_id")["reason"]
    assert "now holds other pixels than were scored" in report[tampered]
    assert "no longer readable" in report[vanished]
    assert report["f" * 64] == "never scored, nor flagged by the label audit"
    assert report.str.startswith("auto label: the scored image: no longer readable at /gone/scan-").sum() == auto_rows
    pool = pd.read_csv(project.paths.reviewed / "labels.csv")
    assert pool["image_id"].tolist() == [good, damaged_copy]
    for path, expected in zip(pool["path"], pool["image_id"], strict=True):
        stored = cv2.imread(str(project.paths.reviewed / path), cv2.IMREAD_UNCHANGED)
        assert image_id(stored) == expected  # the very pixels the doctor saw


def test_importing_the_same_reviews_again_changes_nothing(project, tmp_path: Path):
    queue = pd.read_csv(project.paths.outputs / "review_queue.csv", keep_default_na=False)
    queue.head(2)[["image_id", "label"]].to_csv(tmp_path / "reviewed.csv", index=False)  # no reviewed_at: "now"
    first = pipeline.review_import(project, tmp_path / "reviewed.csv")
    labels = (project.paths.reviewed / "labels.csv").read_bytes()
    again = pipeline.review_import(project, tmp_path / "reviewed.csv")
    assert (first.added, again.added, again.unchanged) == (2, 0, 2)
    assert (project.paths.reviewed / "labels.csv").read_bytes() == labels  # no new version for DVC to retrain on


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
