"""The metrics' definitions: AUC and ACC as MedMNIST computes them, names MLflow accepts."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medcls.model.evaluate import classification_metrics, flat_metrics, without_temperature


def test_auc_and_acc_are_computed_as_medmnist_does():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    scores = rng.random((300, 3)) + np.eye(3)[y] * 0.8
    probabilities = scores / scores.sum(axis=1, keepdims=True)
    metrics = classification_metrics(y, probabilities, ["a", "b", "c"], bins=10)
    expected = np.mean([roc_auc_score(y == k, probabilities[:, k]) for k in range(3)])
    assert metrics["auc"] == pytest.approx(expected)
    assert metrics["acc"] == pytest.approx((probabilities.argmax(1) == y).mean())
    sensitivity_a = ((probabilities.argmax(1) == 0) & (y == 0)).sum() / (y == 0).sum()
    assert metrics["per_class"]["a"]["sensitivity"] == pytest.approx(sensitivity_a)
    # Two classes: the macro AUC equals the positive class's AUC, as in MedMNIST's getAUC.
    binary = np.column_stack([1 - probabilities[:, 0], probabilities[:, 0]])
    assert classification_metrics(y == 0, binary, ["no", "yes"], 10)["auc"] == pytest.approx(
        roc_auc_score(y == 0, probabilities[:, 0])
    )


def test_probabilities_before_temperature_scaling_come_back_from_the_calibrated_ones():
    """Evaluate runs the network once: softmax(logits) is recovered from softmax(logits / T),
    also where a float32 probability underflows to 0."""
    from scipy.special import softmax

    logits = np.random.default_rng(0).normal(0, 8, (500, 5))
    logits[0] = [300.0, 0.0, -300.0, 1.0, 2.0]
    calibrated = softmax(logits / 0.4, axis=1).astype(np.float32).astype(np.float64)
    recovered = without_temperature(calibrated, 0.4)
    np.testing.assert_allclose(recovered, softmax(logits, axis=1), atol=1e-6)
    assert (recovered.argmax(axis=1) == logits.argmax(axis=1)).all()


def test_flat_metric_names_are_valid_mlflow_keys():
    flat = flat_metrics({"test": {"auc": 0.9, "per_class": {"immature granulocyte (IG)": {"auc": 0.8, "support": 3}}}})
    assert flat == {"test_auc": 0.9, "test_auc_immature granulocyte _IG_": 0.8}
