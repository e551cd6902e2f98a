"""The drift alarm on constructed batches: quiet on the calibration population, loud on a shift."""

from __future__ import annotations

import numpy as np

from medcls.model.trust import DriftReference
from medcls.scoring.drift import MIN_IMAGES, check_drift


def _reference(rng: np.random.Generator, count: int = 1000) -> DriftReference:
    features = rng.normal(size=(count, 6))
    return DriftReference(
        confidences=rng.beta(8, 1, count),
        ood_scores=rng.chisquare(6, count),
        predicted=rng.integers(0, 3, count),
        feature_mean=np.zeros(6),
        components=np.eye(6)[:3],
        projections=features[:, :3],
    )


def _batch(rng: np.random.Generator, count: int, shift: float = 0.0) -> tuple:
    return (rng.beta(8, 1, count), rng.chisquare(6, count), rng.integers(0, 3, count),
            rng.normal(size=(count, 6)) + shift)  # fmt: skip


def test_batches_from_the_calibration_population_rarely_raise_the_alarm():
    rng = np.random.default_rng(0)
    reference = _reference(rng)
    alarms = sum(check_drift(reference, *_batch(rng, 300), significance=0.05).detected for _ in range(100))
    assert alarms <= 9  # family-wise 5 % per batch (Bonferroni is conservative)


def test_a_shifted_batch_raises_the_alarm_and_says_where():
    rng = np.random.default_rng(1)
    check = check_drift(_reference(rng), *_batch(rng, 200, shift=0.8), significance=0.01)
    assert check.detected and check.strongest.startswith("feature PC")
    assert check.describe().startswith("DRIFT (p = ")
    confident, scores, _, features = _batch(rng, 200)
    mix = check_drift(_reference(rng), confident, scores, np.zeros(200, int), features, significance=0.01)
    assert mix.detected and mix.strongest == "class mix"


def test_too_few_images_are_not_tested():
    rng = np.random.default_rng(2)
    check = check_drift(_reference(rng), *_batch(rng, MIN_IMAGES - 1, shift=5.0), significance=0.01)
    assert not check.tested and not check.detected and "not tested" in check.describe()
