"""Calibration: temperature scaling fitted on validation logits, and the calibration error.

The temperature becomes a layer of the saved model (network.with_temperature), so every
probability downstream is the calibrated one.
"""

from __future__ import annotations

import numpy as np

from medcls.model.network import logits_model


def predict_logits(model, x: np.ndarray) -> np.ndarray:
    """The network's logits (before temperature and softmax) for a batch of prepared images."""
    return logits_model(model).predict(x.astype(np.float32), batch_size=256, verbose=0).astype(np.float64)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature scaling (Guo et al. 2017): the T > 0 minimising the negative log-likelihood of
    softmax(logits / T) on held-out data. It changes confidences, never the predicted class."""
    from scipy.optimize import minimize_scalar

    def nll(log_t: float) -> float:
        return per_image_nll(logits, y, float(np.exp(log_t))).mean()

    return float(np.exp(minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded").x))


def per_image_nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Each image's negative log-likelihood of its label under softmax(logits / temperature)."""
    from scipy.special import log_softmax

    return -log_softmax(logits / temperature, axis=1)[np.arange(len(y)), y]


def expected_calibration_error(y: np.ndarray, probabilities: np.ndarray, bins: int) -> float:
    """Weighted mean gap between confidence and accuracy over equal-width confidence bins."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y
    bin_index = np.minimum((confidence * bins).astype(int), bins - 1)
    gap = 0.0
    for b in np.unique(bin_index):
        members = bin_index == b
        gap += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(gap)
