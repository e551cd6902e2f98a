"""The label audit: confident learning finds labels the rest of the data contradicts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medcls import pipeline
from medcls.data.manifest import load_manifest
from medcls.review import find_label_errors


def test_flipped_labels_are_found_among_clean_ones():
    """Three well-separated clusters of 100 points; 12 labels flipped to another cluster's class."""
    rng = np.random.default_rng(0)
    y_true = np.repeat([0, 1, 2], 100)
    centres = np.array([[0.0, 0.0, 0.0, 0.0], [6.0, 0.0, 0.0, 0.0], [0.0, 6.0, 0.0, 0.0]])
    features = centres[y_true] + rng.normal(0.0, 1.0, (300, 4))
    flipped = rng.choice(300, 12, replace=False)
    y = y_true.copy()
    y[flipped] = (y[flipped] + 1) % 3
    errors = find_label_errors(features, y, seed=0)
    found = set(errors.flagged.tolist())
    assert len(found & set(flipped.tolist())) >= 11  # nearly every flipped label...
    assert len(found - set(flipped.tolist())) <= 3  # ...and few clean ones
    np.testing.assert_allclose(errors.probabilities.sum(axis=1), 1.0)
    assert (errors.probabilities[flipped].argmax(axis=1) == y_true[flipped]).mean() >= 0.9  # the truth, suggested


def test_a_class_too_small_to_cross_validate_flags_nothing():
    features = np.random.default_rng(1).normal(size=(11, 3))
    y = np.array([0] * 10 + [1])
    errors = find_label_errors(features, y, seed=0)
    assert errors.flagged.size == 0 and errors.probabilities.shape == (11, 2)


def test_audit_rows_name_training_images_with_their_given_labels_and_join_the_queue(project):
    result = pipeline.audit(project)
    audit = pd.read_csv(result.audit_path)
    manifest = load_manifest(project.paths.raw).set_index("image_id")
    train = manifest[manifest["split"] == "train"]
    assert result.audited == len(train) and result.flagged == len(audit) > 0
    assert audit["image_id"].is_unique and set(audit["image_id"]) <= set(train.index)
    assert audit["given_label"].tolist() == manifest.loc[audit["image_id"], "label"].tolist()
    assert all(project.paths.raw.joinpath(path).is_file() for path in audit["path"])
    pipeline.score(project)  # the next scoring run writes the queue with the audit rows in it
    queue = pd.read_csv(project.paths.outputs / "review_queue.csv", keep_default_na=False)
    audited = queue[queue["reason"] == "label audit"]
    assert audited["image_id"].tolist() == audit["image_id"].tolist()
    assert audited["label"].tolist() == audit["suggested_label"].tolist()
