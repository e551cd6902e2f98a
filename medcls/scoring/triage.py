"""Triage of predicted probabilities: the label, how sure the model is, and who labels the image.

`decision = auto` where the calibrated confidence reaches `score.confidence_threshold`, else
`review`. Entropy and margin order the review queue, most uncertain first.
"""

from __future__ import annotations

import numpy as np


def triage(probabilities: np.ndarray, class_names: list[str], threshold: float) -> dict[str, np.ndarray]:
    """The prediction columns of each row: label, confidence, one probability per class, entropy,
    margin and decision."""
    ranked = np.sort(probabilities, axis=1)
    confidence = ranked[:, -1]
    return {
        "label": np.array(class_names)[probabilities.argmax(axis=1)],
        "confidence": confidence,
        **{f"prob_{name}": probabilities[:, index] for index, name in enumerate(class_names)},
        "entropy": entropy(probabilities),
        "margin": ranked[:, -1] - ranked[:, -2] if ranked.shape[1] > 1 else confidence,
        "decision": np.where(confidence >= threshold, "auto", "review"),
    }


def entropy(probabilities: np.ndarray) -> np.ndarray:
    """Shannon entropy of each row divided by log(classes): 0 certain, 1 uniform."""
    logs = np.log(np.clip(probabilities, 1e-12, 1.0))
    return -(probabilities * logs).sum(axis=1) / np.log(max(probabilities.shape[1], 2))
