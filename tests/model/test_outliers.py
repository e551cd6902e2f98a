"""The out-of-distribution gate on constructed features: its false rejections hold by construction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medcls.model.outliers import OutlierGate, fit_gate
from medcls.model.trust import ModelOutputs, Trust, build_trust


def _classes(rng: np.random.Generator, count: int, dimensions: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Three Gaussian classes with correlated features, as pooled network features are."""
    labels = np.arange(count) % 3
    mixing = np.random.default_rng(99).normal(size=(dimensions, dimensions)) / np.sqrt(dimensions)
    features = rng.normal(size=(count, dimensions)) @ mixing + 4.0 * np.eye(dimensions)[labels]
    return features, labels


def test_p_values_are_the_conformal_ranks_among_the_calibration_scores():
    gate = OutlierGate(np.zeros((1, 2)), np.eye(2), np.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_allclose(gate.p_values(np.array([0.5, 2.5, 4.0, 9.0])), [5 / 5, 3 / 5, 2 / 5, 1 / 5])
    np.testing.assert_allclose(gate.scores(np.array([[3.0, 4.0]])), [25.0])  # squared distance, identity metric


def test_the_gate_wrongly_rejects_at_most_its_share_of_images_like_the_calibration_ones():
    rng = np.random.default_rng(0)
    epsilon, shares = 0.01, []
    for _ in range(20):
        train, labels = _classes(rng, 3000)
        gate = fit_gate(train, labels, _classes(rng, 1000)[0])
        shares.append((gate.p_values(gate.scores(_classes(rng, 5000)[0])) <= epsilon).mean())
    assert np.mean(shares) <= 0.013  # epsilon, up to the spread of 20 draws
    assert max(shares) <= 0.02


def test_the_gate_rejects_features_unlike_every_class():
    rng = np.random.default_rng(1)
    train, labels = _classes(rng, 3000)
    gate = fit_gate(train, labels, _classes(rng, 1000)[0])
    elsewhere = rng.normal(size=(500, 16)) * 0.5 + 12.0  # another data set's features
    between = np.full((1, 16), 0.0) + 2.0 * (np.eye(16)[0] + np.eye(16)[1])  # halfway between two classes
    assert (gate.p_values(gate.scores(elsewhere)) <= 0.01).all()
    assert gate.scores(between)[0] > np.median(gate.calibration_scores)


def test_a_gate_is_saved_and_loaded_unchanged_with_the_models_trust(tmp_path: Path):
    rng = np.random.default_rng(2)

    def outputs(count: int) -> ModelOutputs:
        features, labels = _classes(rng, count)
        return ModelOutputs(rng.dirichlet(np.ones(3), count), features, labels)

    trust = build_trust(outputs(600), outputs(200), outputs(200), ["a", "b", "c"], 0.05, 0.1, "marginal")
    loaded = Trust.load(trust.save(tmp_path / "trust"))
    probe = _classes(rng, 10)[0]
    np.testing.assert_allclose(loaded.gate.scores(probe), trust.gate.scores(probe))
    np.testing.assert_allclose(loaded.reference.project(probe), trust.reference.project(probe))
    assert loaded.guarantee == trust.guarantee


@pytest.mark.parametrize("calibration", [0, 5])
def test_with_too_few_calibration_images_the_gate_cannot_reject_at_one_percent(calibration: int):
    rng = np.random.default_rng(3)
    train, labels = _classes(rng, 300)
    gate = fit_gate(train, labels, _classes(rng, calibration)[0] if calibration else np.zeros((0, 16)))
    assert (gate.p_values(gate.scores(np.full((3, 16), 50.0))) > 0.01).all()
