"""Triage of scored images: the label, how sure the model is, and who labels the image.

`decision = auto` only where every check holds: the image is like the training data (its
acquisition, where the file says, and the out-of-distribution gate on its features), the
model's certified threshold (medcls.model.guarantee) is reached, and audits have not suspended
the version's auto labels. An image unlike the training data is `out_of_distribution`; every
other one is `review`. `reason` says why a row is not auto (or that an auto row is audited).
Entropy and margin order the review queue, most uncertain first.
"""

from __future__ import annotations

import hashlib

import numpy as np

from medcls.catalog import AUDIT, AUTO, OUT_OF_DISTRIBUTION, REVIEW
from medcls.config import ScoreConfig
from medcls.registry.models import RegisteredModel


def triage(probabilities: np.ndarray, class_names: list[str]) -> dict[str, np.ndarray]:
    """The prediction columns of each row: label, confidence, one probability per class, entropy
    and margin."""
    ranked = np.sort(probabilities, axis=1)
    confidence = ranked[:, -1]
    return {
        "label": np.array(class_names)[probabilities.argmax(axis=1)],
        "confidence": confidence,
        **{f"prob_{name}": probabilities[:, index] for index, name in enumerate(class_names)},
        "entropy": entropy(probabilities),
        "margin": ranked[:, -1] - ranked[:, -2] if ranked.shape[1] > 1 else confidence,
    }


def decide(
    image_ids: list[str],
    probabilities: np.ndarray,
    features: np.ndarray,
    acquisitions: list[dict],
    production: RegisteredModel,
    cfg: ScoreConfig,
    suspended: str = "",
) -> dict[str, np.ndarray]:
    """The decision columns of each row: decision, reason, the threshold its label needed,
    the out-of-distribution score and p-value, and whether an auto label is audited."""
    count, trust = len(probabilities), production.trust
    confidence, predicted = probabilities.max(axis=1), probabilities.argmax(axis=1)
    if cfg.confidence_threshold is not None:
        cutoffs = np.full(count, cfg.confidence_threshold)
    elif trust is not None:
        cutoffs = trust.cutoffs(predicted, production.class_names)
    else:
        cutoffs = np.full(count, np.inf)
    ood_scores = trust.gate.scores(features) if trust is not None else np.full(count, np.nan)
    p_values = trust.gate.p_values(ood_scores) if trust is not None else np.full(count, np.nan)
    unlike = np.array([unlike_training(acquisition, production.acquisition) for acquisition in acquisitions], object)
    outlying = p_values <= cfg.ood_false_rejection  # False where NaN: no gate
    out = (unlike != "") | outlying
    sure = confidence >= cutoffs
    auto = ~out & sure & (suspended == "")
    reason = np.select(
        [unlike != "", outlying, ~np.isfinite(cutoffs), ~sure, ~auto],
        [unlike, [f"features unlike the training data's (p = {p:.2g})" for p in p_values],
         "no certified threshold", "uncertain", f"auto labels suspended: {suspended}"],
        "",
    )  # fmt: skip
    audited = auto & audit_draws(image_ids, production.version, cfg.audit_fraction)
    return {
        "decision": np.where(out, OUT_OF_DISTRIBUTION, np.where(auto, AUTO, REVIEW)),
        "reason": np.where(audited, AUDIT, reason),
        "threshold": np.where(np.isfinite(cutoffs), cutoffs, np.nan),
        "ood_score": ood_scores,
        "ood_p_value": p_values,
    }


def unlike_training(acquisition: dict, trained: dict) -> str:
    """Why an image's acquisition is unlike every training image's ("" if it is not, or if
    either side does not say): colour against gray, or a DICOM attribute never seen in training."""
    channels, seen = acquisition.get("channels"), trained.get("channels") or []
    if channels is not None and seen and channels not in seen:
        kinds = {1: "grayscale", 3: "colour"}
        return f"a {kinds.get(channels, channels)} image; the model learned from {kinds.get(seen[0], seen[0])} images"
    for name, value in acquisition.items():
        known = trained.get(name) or []
        if name != "channels" and value and known and value not in known:
            return f"DICOM {name} {value}; the training images are {', '.join(known)}"
    return ""


def audit_draws(image_ids: list[str], version: str, fraction: float) -> np.ndarray:
    """Which images are audited: a draw of probability `fraction` each, independent of whether
    the label is right. It is a hash of the image id and the model version, so scoring the same
    image again draws the same, and each version draws anew."""
    draws = [hashlib.blake2b(f"{image_id}:{version}".encode(), digest_size=8).digest() for image_id in image_ids]
    return np.array([int.from_bytes(draw, "big") / 2**64 < fraction for draw in draws], bool)


def entropy(probabilities: np.ndarray) -> np.ndarray:
    """Shannon entropy of each row divided by log(classes): 0 certain, 1 uniform."""
    logs = np.log(np.clip(probabilities, 1e-12, 1.0))
    return -(probabilities * logs).sum(axis=1) / np.log(max(probabilities.shape[1], 2))
