"""Label audit: likely mislabelled training images, found by confident learning.

Out-of-fold predicted probabilities come from a logistic regression on the trained network's
pooled features, cross-validated (each image is predicted by a model that never saw it), which
costs seconds instead of retraining the network per fold. cleanlab's `find_label_issues` then
flags images whose given label the rest of the data contradicts; they are written to
`label_audit.csv` and join the review queue, where a doctor confirms or corrects them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medcls.catalog import REVIEW, RawData, ScoringOutputs
from medcls.data.manifest import load_manifest
from medcls.data.preprocess import load_split
from medcls.model.network import pooled_features_model
from medcls.model.record import load_trained_model, load_training
from medcls.support.files import read_csv_table, write_table
from medcls.support.progress import track

AUDIT_COLUMNS = [
    "image_id",
    "path",
    "given_label",
    "suggested_label",
    "given_label_probability",
    "suggested_label_probability",
]
_BATCH = 256


@dataclass(frozen=True)
class AuditResult:
    audit_path: Path
    audited: int
    flagged: int


@dataclass(frozen=True)
class LabelErrors:
    flagged: np.ndarray  # indices, most suspicious first
    probabilities: np.ndarray  # out-of-fold, one row per image


def audit_labels(model_dir: Path, processed_dir: Path, raw_dir: Path, out_dir: Path, *, seed: int) -> AuditResult:
    """Flag likely label errors in the training split, most suspicious first."""
    class_names = np.array(load_training(model_dir)["class_names"])
    x, y, ids = load_split(processed_dir, "train")
    errors = find_label_errors(pooled_features(load_trained_model(model_dir), x), y, seed)
    flagged, probabilities = errors.flagged, errors.probabilities[errors.flagged]
    files = load_manifest(raw_dir).set_index("image_id")["file"]
    audit = pd.DataFrame(
        {
            "image_id": ids[flagged],
            "path": [str(RawData(raw_dir).image(files[i])) for i in ids[flagged]],
            "given_label": class_names[y[flagged]],
            "suggested_label": class_names[probabilities.argmax(axis=1)],
            "given_label_probability": probabilities[np.arange(len(flagged)), y[flagged]],
            "suggested_label_probability": probabilities.max(axis=1),
        },
        columns=AUDIT_COLUMNS,
    )
    path = write_table(ScoringOutputs(out_dir).label_audit, audit)
    return AuditResult(path, len(y), len(audit))


def pooled_features(model, x: np.ndarray) -> np.ndarray:
    """The network's pooled feature vector of each image, in batches (with progress)."""
    extractor = pooled_features_model(model)
    starts = track(range(0, len(x), _BATCH), "audit: features", total=len(x), unit="images", weight=_batch_size(len(x)))
    parts = [np.asarray(extractor.predict_on_batch(x[start : start + _BATCH].astype(np.float32))) for start in starts]
    return np.concatenate(parts) if parts else np.zeros((0, extractor.output.shape[-1]), np.float32)


def _batch_size(total: int):
    return lambda start: min(_BATCH, total - start)


def find_label_errors(features: np.ndarray, y: np.ndarray, seed: int) -> LabelErrors:
    """Confident learning on out-of-fold probabilities of a logistic regression on `features`.
    With fewer than two images in some class nothing can be cross-validated: none is flagged."""
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = min(5, int(np.bincount(y).min())) if len(y) else 0
    if folds < 2:
        return LabelErrors(np.zeros(0, int), np.full((len(y), len(np.bincount(y)) or 1), np.nan))
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    probabilities = cross_val_predict(classifier, features, y, cv=cv, method="predict_proba")
    return LabelErrors(find_label_issues(y, probabilities, return_indices_ranked_by="self_confidence"), probabilities)


def audit_queue(out_dir: Path) -> pd.DataFrame:
    """The flagged images as review-queue rows: the suggestion as the label to confirm."""
    audit = read_csv_table(ScoringOutputs(out_dir).label_audit, tuple(AUDIT_COLUMNS))
    if audit.empty:
        return pd.DataFrame()
    return pd.DataFrame(
        {
            "image_id": audit["image_id"],
            "path": audit["path"],
            "label": audit["suggested_label"],
            "confidence": audit["suggested_label_probability"].astype(float),
            "given_label": audit["given_label"],
            "decision": REVIEW,
            "model_version": "label audit",
            "heatmap": "",
            "reason": "label audit",
        }
    )
