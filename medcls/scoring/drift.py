"""The drift alarm: are a chunk's images drawn from the population the guarantee was certified on?

Each chunk of a scoring run is compared with the calibration images (medcls.model.trust's
reference) by two-sample tests from SciPy: Kolmogorov-Smirnov on the calibrated confidence, on
the out-of-distribution score and on the features along their principal directions, and a
chi-square test of the predicted-class mix. The tests are combined by Bonferroni, so an alarm
at `score.drift_significance` is a family-wise false alarm rate per chunk. An alarm means the
auto-label guarantee may not hold for the chunk; by default its auto labels go to review.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from medcls.model.trust import DriftReference

MIN_IMAGES = 20  # fewer images than this say too little to test


@dataclass(frozen=True)
class DriftCheck:
    images: int
    significance: float
    p_values: dict[str, float]  # per test, before the Bonferroni correction; empty: not tested

    @property
    def tested(self) -> bool:
        return bool(self.p_values)

    @property
    def adjusted(self) -> float:
        """The smallest p-value times the number of tests (capped at 1): the family's p-value."""
        return min(1.0, min(self.p_values.values()) * len(self.p_values)) if self.p_values else 1.0

    @property
    def detected(self) -> bool:
        return self.tested and self.adjusted <= self.significance

    @property
    def strongest(self) -> str:
        """The test with the smallest p-value (what drifted most)."""
        return min(self.p_values, key=self.p_values.get) if self.p_values else ""

    def describe(self) -> str:
        if not self.tested:
            return f"not tested ({self.images} images; the drift tests need {MIN_IMAGES})"
        verdict = "DRIFT" if self.detected else "no drift"
        return f"{verdict} (p = {self.adjusted:.2g} over {len(self.p_values)} tests, most in {self.strongest})"


def check_drift(
    reference: DriftReference,
    confidences: np.ndarray,
    ood_scores: np.ndarray,
    predicted: np.ndarray,
    features: np.ndarray,
    significance: float,
) -> DriftCheck:
    """Compare a chunk with the reference; not tested when either side has too few images."""
    count = len(confidences)
    if count < MIN_IMAGES or len(reference.confidences) < MIN_IMAGES:
        return DriftCheck(count, significance, {})
    from scipy.stats import chi2_contingency, ks_2samp

    p_values = {
        "confidence": ks_2samp(confidences, reference.confidences).pvalue,
        "ood score": ks_2samp(ood_scores, reference.ood_scores).pvalue,
    }
    classes = max(int(predicted.max(initial=0)), int(reference.predicted.max(initial=0))) + 1
    mix = np.stack([np.bincount(predicted, minlength=classes), np.bincount(reference.predicted, minlength=classes)])
    mix = mix[:, mix.sum(axis=0) > 0]
    if mix.shape[1] > 1:
        with warnings.catch_warnings():  # small expected counts: the p-value is approximate, still valid to rank
            warnings.simplefilter("ignore", RuntimeWarning)
            p_values["class mix"] = chi2_contingency(mix).pvalue
    projected = reference.project(features)
    for component in range(projected.shape[1]):
        p_values[f"feature PC{component + 1}"] = ks_2samp(
            projected[:, component], reference.projections[:, component]
        ).pvalue
    return DriftCheck(count, significance, {name: float(value) for name, value in p_values.items()})
