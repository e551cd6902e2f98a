"""The certified auto-label threshold against known binomial cases, and the audits' sequential test."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from medcls.model.guarantee import Guarantee, certify, error_evidence, minimum_needed

CLASSES = ["a", "b"]


def _outputs(confidences: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-class probabilities with these top-class confidences, labels right where `correct`."""
    probabilities = np.column_stack([confidences, 1 - confidences])
    return probabilities, np.where(correct, 0, 1)


def _all_at(confidence: float, count: int, wrong: int) -> tuple[np.ndarray, np.ndarray]:
    return _outputs(np.full(count, confidence), np.arange(count) >= wrong)


def test_the_fewest_images_that_can_certify_is_the_binomial_one():
    # n all-correct images certify error <= alpha at level delta iff (1 - alpha)^n <= delta.
    assert minimum_needed(0.02, 0.05) == 149
    assert 0.98**149 <= 0.05 < 0.98**148
    assert minimum_needed(0.05, 0.1) == math.ceil(math.log(0.1) / math.log(0.95))


@pytest.mark.parametrize(("count", "certified"), [(149, True), (148, False)])
def test_all_correct_calibration_images_certify_only_from_the_binomial_minimum(count: int, certified: bool):
    guarantee = certify(_all_at(0.99, count, 0), _all_at(0.99, 50, 0), CLASSES, alpha=0.02, delta=0.05,
                        mode="marginal")  # fmt: skip
    assert guarantee.certified is certified
    if certified:
        assert guarantee.threshold is not None and guarantee.expected_coverage == 1.0
    else:
        assert "149" in guarantee.describe() and "nothing is auto-labelled" in guarantee.describe()
        assert guarantee.cutoffs(np.array([0, 1]), CLASSES).tolist() == [np.inf, np.inf]


def test_errors_among_calibration_images_certify_exactly_as_the_binomial_test_allows():
    """With k wrong of n images above the threshold, it is certified iff P(Bin(n, alpha) <= k) <= delta."""
    n, alpha, delta = 1000, 0.05, 0.05
    certifiable = max(k for k in range(n) if binom.cdf(k, n, alpha) <= delta)
    for wrong, expected in ((certifiable, True), (certifiable + 1, False)):
        guarantee = certify(_all_at(0.9, n, wrong), _all_at(0.9, 100, 0), CLASSES, alpha, delta, "marginal")
        assert guarantee.certified is expected, wrong


@pytest.mark.parametrize("count", [325, 329, 338])
def test_the_count_of_errors_is_exact_whatever_the_float_round_off(count: int):
    # 2 wrong of 338 is 2/338 * 338 = 2.0000000000000004 in floats; counted as 3 errors, the
    # p-value would be 0.093 instead of 0.034 and the threshold would not be certified.
    assert binom.cdf(2, count, 0.02) <= 0.05
    guarantee = certify(_all_at(0.99, count, 2), _all_at(0.99, 500, 0), CLASSES, 0.02, 0.05, "marginal")
    assert guarantee.certified and guarantee.calibration_error == pytest.approx(2 / count)


def test_thresholds_no_ordering_image_reaches_come_last_and_cannot_stop_the_sequence():
    calibration = _outputs(np.linspace(0.6, 0.999, 2000), np.ones(2000, bool))
    ordering = _outputs(np.full(300, 0.7), np.ones(300, bool))  # nothing above 0.7 to order by
    guarantee = certify(calibration, ordering, CLASSES, 0.02, 0.05, "marginal")
    assert guarantee.certified and guarantee.threshold <= 0.7


def test_the_chosen_threshold_keeps_the_realised_error_below_alpha_in_repeated_draws():
    """A model whose confidence is calibrated: over repeated calibration draws, the error among
    fresh images above the certified threshold exceeds alpha no more often than delta allows."""
    rng = np.random.default_rng(0)
    alpha, delta, violations, certified, draws = 0.05, 0.1, 0, 0, 30

    def sample(count: int) -> tuple[np.ndarray, np.ndarray]:
        confidences = 0.5 + 0.5 * rng.beta(6, 1, count)  # most near 1, as a trained network's are
        return _outputs(confidences, rng.random(count) < confidences)

    fresh_probabilities, fresh_labels = sample(50_000)
    for _ in range(draws):
        guarantee = certify(sample(2000), sample(1000), CLASSES, alpha, delta, "marginal")
        if guarantee.certified:
            certified += 1
            auto = fresh_probabilities.max(axis=1) >= guarantee.threshold
            violations += (fresh_probabilities.argmax(axis=1)[auto] != fresh_labels[auto]).mean() > alpha
    assert certified >= 0.8 * draws
    assert violations <= delta * draws + 2  # binomial slack: 30 draws at delta 0.1 expect at most 3


def test_per_class_certifies_each_predicted_class_on_its_own():
    rng = np.random.default_rng(1)
    good = _outputs(np.full(400, 0.97), np.ones(400, bool))  # class a, always right
    bad_probabilities = np.column_stack([np.full(400, 0.03), np.full(400, 0.97)])  # class b predicted...
    bad_labels = np.where(rng.random(400) < 0.3, 0, 1)  # ...and wrong 30 % of the time
    calibration = (np.vstack([good[0], bad_probabilities]), np.concatenate([good[1], bad_labels]))
    guarantee = certify(calibration, calibration, CLASSES, alpha=0.02, delta=0.05, mode="per_class")
    assert guarantee.class_thresholds["a"] is not None and guarantee.class_thresholds["b"] is None
    assert guarantee.certified and guarantee.calibration_error == 0.0
    assert guarantee.expected_coverage == pytest.approx(0.5)
    assert np.isinf(guarantee.cutoffs(np.array([1]), CLASSES)[0])


def test_a_guarantee_travels_as_a_dictionary():
    guarantee = certify(_all_at(0.99, 300, 0), _all_at(0.99, 50, 0), CLASSES, 0.02, 0.05, "marginal")
    assert Guarantee.from_dict(guarantee.to_dict()) == guarantee
    assert "error <= 0.02 with 95% confidence" in guarantee.describe()


def test_the_audit_evidence_is_a_product_of_bets():
    # One wrong label: the mean over bet sizes lam = j / 20 * 0.5 / alpha of 1 + lam * (1 - alpha).
    bets = np.arange(1, 21) / 20 * 0.5 / 0.02
    assert error_evidence([True], 0.02) == pytest.approx(np.mean(1 + bets * 0.98))
    assert error_evidence([True], 0.02) < 20 <= error_evidence([True, True], 0.02)  # delta 0.05
    assert error_evidence([], 0.02) == pytest.approx(1.0)
    assert error_evidence([False] * 500, 0.02) < 1.0  # correct labels are evidence for the guarantee


def test_the_audit_test_rarely_fires_when_the_guarantee_holds_and_soon_when_it_does_not():
    rng = np.random.default_rng(2)
    alpha, limit = 0.02, 20  # delta 0.05

    def first_alarm(error: float, count: int) -> int | None:
        wrong = rng.random(count) < error
        return next((n for n in range(1, count + 1) if error_evidence(wrong[:n], alpha) >= limit), None)

    false_alarms = sum(first_alarm(alpha, 300) is not None for _ in range(100))
    assert false_alarms <= 10  # at most delta (5 %) in expectation, however often it is checked
    alarms = [first_alarm(0.15, 200) for _ in range(20)]
    assert all(n is not None and n < 150 for n in alarms)
