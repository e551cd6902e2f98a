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

from medcls.files import write_table
from medcls.ingest import load_manifest
from medcls.model import POOLED_FEATURES_LAYER
from medcls.preprocess import load_split
from medcls.train import MODEL_FILE, load_training

AUDIT = "label_audit.csv"


@dataclass(frozen=True)
class AuditResult:
    audit_path: Path
    audited: int
    flagged: int


def audit_labels(model_dir: Path, processed_dir: Path, raw_dir: Path, out_dir: Path, *, seed: int) -> AuditResult:
    """Flag likely label errors in the training split, most suspicious first."""
    import keras
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    class_names = load_training(model_dir)["class_names"]
    model = keras.saving.load_model(model_dir / MODEL_FILE)
    x, y, ids = load_split(processed_dir, "train")
    extractor = keras.Model(model.inputs, model.get_layer(POOLED_FEATURES_LAYER).output)
    features = extractor.predict(x.astype(np.float32), batch_size=256, verbose=0)
    folds = min(5, int(np.bincount(y).min())) if len(y) else 0
    if folds < 2:
        write_table(out_dir / AUDIT, pd.DataFrame(columns=_COLUMNS))
        return AuditResult(out_dir / AUDIT, len(y), 0)
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    probabilities = cross_val_predict(classifier, features, y, cv=cv, method="predict_proba")
    flagged = find_label_issues(y, probabilities, return_indices_ranked_by="self_confidence")
    files = load_manifest(raw_dir).set_index("image_id")["file"]
    names = np.array(class_names)
    audit = pd.DataFrame(
        {
            "image_id": ids[flagged],
            "path": [str(raw_dir / files[i]) for i in ids[flagged]],
            "given_label": names[y[flagged]],
            "suggested_label": names[probabilities[flagged].argmax(axis=1)],
            "given_label_probability": probabilities[flagged, y[flagged]],
            "suggested_label_probability": probabilities[flagged].max(axis=1),
        }
    )
    write_table(out_dir / AUDIT, audit)
    return AuditResult(out_dir / AUDIT, len(y), len(audit))


_COLUMNS = [
    "image_id",
    "path",
    "given_label",
    "suggested_label",
    "given_label_probability",
    "suggested_label_probability",
]


def audit_queue(out_dir: Path) -> pd.DataFrame:
    """The flagged images as review-queue rows: the suggestion as the label to confirm."""
    path = out_dir / AUDIT
    if not path.exists():
        return pd.DataFrame()
    audit = pd.read_csv(path, dtype=str, keep_default_na=False)
    return pd.DataFrame(
        {
            "image_id": audit["image_id"],
            "path": audit["path"],
            "label": audit["suggested_label"],
            "confidence": audit["suggested_label_probability"].astype(float),
            "given_label": audit["given_label"],
            "decision": "review",
            "model_version": "label audit",
            "heatmap": "",
            "reason": "label audit",
        }
    )
