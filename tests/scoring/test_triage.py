"""Triage: label, confidence and uncertainty from the probabilities; who labels each image."""

from __future__ import annotations

import numpy as np
import pytest

from medcls.config import DicomConfig, PreprocessConfig, ScoreConfig
from medcls.model.guarantee import Guarantee
from medcls.model.outliers import fit_gate
from medcls.model.trust import DriftReference, Trust
from medcls.registry.models import RegisteredModel
from medcls.scoring.triage import audit_draws, decide, entropy, triage, unlike_training

CLASSES = ["a", "b"]
GRAY = {"channels": [1], "modality": ["CR", "DX"], "body_part": ["CHEST"]}


def test_triage_columns_follow_the_probabilities():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.34, 0.33, 0.33], [0.0, 0.0, 1.0]])
    rows = triage(probabilities, ["a", "b", "c"])
    assert rows["label"].tolist() == ["a", "a", "c"]
    assert rows["confidence"].tolist() == [0.7, 0.34, 1.0]
    np.testing.assert_allclose(rows["margin"], [0.5, 0.01, 1.0])
    assert rows["prob_b"].tolist() == [0.2, 0.33, 0.0]


def test_entropy_is_zero_when_certain_and_one_when_uniform():
    assert entropy(np.array([[1.0, 0.0, 0.0, 0.0]]))[0] == pytest.approx(0.0, abs=1e-9)
    assert entropy(np.full((1, 4), 0.25))[0] == pytest.approx(1.0)
    assert 0 < entropy(np.array([[0.9, 0.1]]))[0] < entropy(np.array([[0.6, 0.4]]))[0] < 1


def _production(threshold: float | None = 0.9, version: str = "3") -> RegisteredModel:
    """A model whose training features are two Gaussian classes in 8 dimensions."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 500)
    features = rng.normal(size=(1000, 8)) + labels[:, None] * 3.0
    calibration = rng.normal(size=(400, 8)) + np.repeat([0, 1], 200)[:, None] * 3.0
    gate = fit_gate(features, labels, calibration)
    guarantee = Guarantee("marginal", 0.02, 0.05, 400, threshold, expected_coverage=0.8, calibration_error=0.01)
    reference = DriftReference(np.ones(400), gate.calibration_scores, np.zeros(400, int), np.zeros(8), np.eye(8)[:2],
                               np.zeros((400, 2)))  # fmt: skip
    trust = Trust(guarantee, gate, reference)
    return RegisteredModel(None, "m", version, CLASSES, PreprocessConfig(), DicomConfig(), trust, GRAY)


def _decide(probabilities, features, production, acquisitions=None, suspended="", **settings):
    count = len(probabilities)
    acquisitions = acquisitions or [{"channels": 1}] * count
    cfg = ScoreConfig(**({"audit_fraction": 0.0} | settings))
    return decide([f"id{i}" for i in range(count)], np.asarray(probabilities), np.asarray(features, float),
                  acquisitions, production, cfg, suspended)  # fmt: skip


def test_only_confident_images_like_the_training_data_are_auto_labelled():
    inside, far = np.zeros(8), np.full(8, 40.0)
    rows = _decide([[0.95, 0.05], [0.6, 0.4], [0.99, 0.01]], [inside, inside, far], _production())
    assert rows["decision"].tolist() == ["auto", "review", "out_of_distribution"]
    assert rows["reason"][1] == "uncertain" and rows["reason"][2].startswith("features unlike")
    assert rows["ood_p_value"][2] == pytest.approx(1 / 401) and rows["ood_p_value"][0] > 0.01
    assert rows["threshold"].tolist() == [0.9, 0.9, 0.9]


def test_without_a_certified_threshold_nothing_is_auto_labelled_unless_overridden():
    rows = _decide([[0.999, 0.001]], [np.zeros(8)], _production(threshold=None))
    assert rows["decision"].tolist() == ["review"] and rows["reason"].tolist() == ["no certified threshold"]
    assert np.isnan(rows["threshold"][0])
    override = _decide([[0.7, 0.3]], [np.zeros(8)], _production(threshold=None), confidence_threshold=0.6)
    assert override["decision"].tolist() == ["auto"] and override["threshold"].tolist() == [0.6]


def test_a_suspended_version_labels_nothing_itself():
    rows = _decide([[0.99, 0.01]], [np.zeros(8)], _production(), suspended="3 of 20 audited labels wrong")
    assert rows["decision"].tolist() == ["review"]
    assert rows["reason"][0] == "auto labels suspended: 3 of 20 audited labels wrong"


def test_an_acquisition_unlike_the_training_data_is_out_of_distribution_before_the_model_is_asked():
    colour = [{"channels": 3}]
    rows = _decide([[0.99, 0.01]], [np.zeros(8)], _production(), acquisitions=colour)
    assert rows["decision"].tolist() == ["out_of_distribution"]
    assert rows["reason"][0] == "a colour image; the model learned from grayscale images"
    ct = [{"channels": 1, "modality": "CT", "body_part": "CHEST", "photometric": "MONOCHROME2"}]
    assert _decide([[0.99, 0.01]], [np.zeros(8)], _production(), acquisitions=ct)["reason"][0] == (
        "DICOM modality CT; the training images are CR, DX"
    )


def test_acquisitions_compare_only_what_both_sides_say():
    assert unlike_training({"channels": 1, "modality": "DX", "body_part": ""}, GRAY) == ""
    assert unlike_training({"channels": 1}, GRAY) == ""  # not DICOM: nothing to compare
    assert unlike_training({"channels": 3, "modality": "XC"}, {"channels": [1, 3]}) == ""  # trained on both


def test_audits_draw_a_fixed_share_of_images_the_same_way_every_time():
    ids = [f"image{i}" for i in range(20_000)]
    drawn = audit_draws(ids, "3", 0.05)
    assert drawn.mean() == pytest.approx(0.05, abs=0.005)
    assert (audit_draws(ids, "3", 0.05) == drawn).all()
    assert (audit_draws(ids, "4", 0.05) != drawn).any()  # each version draws anew
    rows = _decide([[0.99, 0.01]] * 400, np.zeros((400, 8)), _production(), audit_fraction=0.1)
    audited = rows["reason"] == "audit"
    assert 20 < audited.sum() < 60 and (rows["decision"][audited] == "auto").all()
