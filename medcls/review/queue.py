"""The review queue: what a doctor should look at, most uncertain first, then the label audit's
suspects; published as a CSV and as Label Studio tasks."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from medcls.catalog import ScoringOutputs
from medcls.review.audit import audit_queue
from medcls.review.label_studio import export_label_studio
from medcls.support.files import write_table


def publish_review_queue(predictions: pd.DataFrame, order: str, class_names: list[str], out_dir: Path) -> Path:
    """Write `review_queue.csv` (the `review` rows of `predictions` in `order`, reason `uncertain`,
    then the label-audit rows) and its Label Studio import; returns the queue's path."""
    outputs = ScoringOutputs(out_dir)
    queue = pd.concat([review_queue(predictions, order).assign(reason="uncertain"), audit_queue(out_dir)],
                      ignore_index=True)  # fmt: skip
    write_table(outputs.review_queue, queue)
    export_label_studio(queue, class_names, out_dir, files_root=out_dir.parent)
    return outputs.review_queue


def review_queue(predictions: pd.DataFrame, order: str) -> pd.DataFrame:
    """The `review` rows, the most uncertain first: by entropy, margin or confidence."""
    if not len(predictions):
        return predictions
    queue = predictions[predictions["decision"] == "review"]
    column, most_uncertain_first = {"entropy": ("entropy", False), "margin": ("margin", True)}.get(
        order, ("confidence", True)
    )
    return queue.sort_values(column, ascending=most_uncertain_first, kind="stable")
