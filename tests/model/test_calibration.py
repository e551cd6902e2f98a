"""Calibration: temperature scaling and the expected calibration error."""

from __future__ import annotations

import numpy as np
import pytest

from medcls.model.calibration import expected_calibration_error, fit_temperature


def test_calibration_error():
    y = np.array([0, 0, 0, 1])
    confident = np.array([[1.0, 0.0]] * 3 + [[0.0, 1.0]])
    assert expected_calibration_error(y, confident, bins=10) == pytest.approx(0.0)
    overconfident = np.array([[0.9, 0.1]] * 4)  # 90 % sure, 75 % right
    assert expected_calibration_error(y, overconfident, bins=10) == pytest.approx(0.15)


def test_temperature_scaling_recovers_the_temperature_of_the_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, (4000, 4))
    scaled = np.exp(logits / 2.0)
    probabilities = scaled / scaled.sum(axis=1, keepdims=True)
    y = np.array([rng.choice(4, p=p) for p in probabilities])  # labels drawn at temperature 2
    assert fit_temperature(logits, y) == pytest.approx(2.0, rel=0.1)
