"""The review queue: what a doctor should look at. First the images the model left to a doctor,
most uncertain first; then those unlike the training data (out of distribution); then the
audited auto labels (a random share, which keeps the guarantee honest); then the label audit's
suspects. Each row says why it is there (`reason`). Published as a CSV and as Label Studio tasks."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from medcls.catalog import OUT_OF_DISTRIBUTION, REVIEW, ScoringOutputs
from medcls.review.audit import audit_queue
from medcls.review.guarantee_audit import audited_auto_labels
from medcls.review.label_studio import export_label_studio
from medcls.support.files import write_table


def publish_review_queue(predictions: pd.DataFrame, order: str, class_names: list[str], out_dir: Path) -> Path:
    """Write `review_queue.csv` (the rows of `predictions` a doctor should see, then the
    label-audit rows) and its Label Studio import; returns the queue's path."""
    outputs = ScoringOutputs(out_dir)
    queue = pd.concat([review_queue(predictions, order), audit_queue(out_dir)], ignore_index=True)
    write_table(outputs.review_queue, queue)
    export_label_studio(queue, class_names, out_dir, files_root=out_dir.parent)
    return outputs.review_queue


def review_queue(predictions: pd.DataFrame, order: str) -> pd.DataFrame:
    """The `review` rows, the most uncertain first (by entropy, margin or confidence), then the
    `out_of_distribution` rows, then the audited `auto` rows."""
    if not len(predictions):
        return predictions
    if "reason" not in predictions:  # predictions written before rows had a reason
        predictions = predictions.assign(reason=predictions["decision"].map({REVIEW: "uncertain"}).fillna(""))
    column, most_uncertain_first = {"entropy": ("entropy", False), "margin": ("margin", True)}.get(
        order, ("confidence", True)
    )
    review = predictions[predictions["decision"] == REVIEW]
    return pd.concat(
        [
            review.sort_values(column, ascending=most_uncertain_first, kind="stable"),
            predictions[predictions["decision"] == OUT_OF_DISTRIBUTION],
            audited_auto_labels(predictions),
        ]
    )
