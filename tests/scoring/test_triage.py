"""Triage: label, confidence, uncertainty and the auto/review decision from the probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from medcls.scoring.triage import entropy, triage


def test_triage_columns_follow_the_probabilities():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.34, 0.33, 0.33], [0.0, 0.0, 1.0]])
    rows = triage(probabilities, ["a", "b", "c"], threshold=0.7)
    assert rows["label"].tolist() == ["a", "a", "c"]
    assert rows["confidence"].tolist() == [0.7, 0.34, 1.0]
    assert rows["decision"].tolist() == ["auto", "review", "auto"]  # at the threshold counts
    np.testing.assert_allclose(rows["margin"], [0.5, 0.01, 1.0])
    assert rows["prob_b"].tolist() == [0.2, 0.33, 0.0]


def test_entropy_is_zero_when_certain_and_one_when_uniform():
    assert entropy(np.array([[1.0, 0.0, 0.0, 0.0]]))[0] == pytest.approx(0.0, abs=1e-9)
    assert entropy(np.full((1, 4), 0.25))[0] == pytest.approx(1.0)
    assert 0 < entropy(np.array([[0.9, 0.1]]))[0] < entropy(np.array([[0.6, 0.4]]))[0] < 1
