"""The out-of-distribution gate: how unlike the training data an image is, from the network's
pooled features, with a false-rejection rate that holds by construction.

The score is the Mahalanobis distance to the nearest class mean (Lee et al. 2018), class means
and one shared covariance fitted on the training images' features (Ledoit-Wolf shrinkage, as the
features outnumber what a small data set pins down). It becomes a conformal p-value against the
calibration images' scores: p = (1 + #calibration scores >= s) / (n + 1). Rejecting p <= epsilon
wrongly rejects at most a share epsilon of images exchangeable with the calibration images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OutlierGate:
    means: np.ndarray  # classes x features
    whitening: np.ndarray  # features x features: W with W W^T = the inverse covariance
    calibration_scores: np.ndarray  # sorted

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each feature vector to the nearest class mean."""
        white = features.astype(np.float64) @ self.whitening
        centres = self.means @ self.whitening
        distances = (white**2).sum(axis=1)[:, None] - 2 * white @ centres.T + (centres**2).sum(axis=1)[None, :]
        return np.maximum(distances.min(axis=1), 0.0)

    def p_values(self, scores: np.ndarray) -> np.ndarray:
        """Conformal p-values: the share of calibration images at least as unusual."""
        at_least = len(self.calibration_scores) - np.searchsorted(self.calibration_scores, scores, side="left")
        return (1 + at_least) / (len(self.calibration_scores) + 1)


def fit_gate(train_features: np.ndarray, train_labels: np.ndarray, calibration_features: np.ndarray) -> OutlierGate:
    """Class means and a shrunk shared covariance from the training features; scores of the
    calibration features as the reference."""
    from sklearn.covariance import LedoitWolf

    features = train_features.astype(np.float64)
    classes = np.unique(train_labels)
    means = np.stack([features[train_labels == label].mean(axis=0) for label in classes])
    centred = features - means[np.searchsorted(classes, train_labels)]
    precision = LedoitWolf().fit(centred).precision_
    whitening = np.linalg.cholesky((precision + precision.T) / 2)
    gate = OutlierGate(means, whitening, np.zeros(0))
    return OutlierGate(means, whitening, np.sort(gate.scores(calibration_features)))
