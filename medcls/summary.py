"""`medcls summary`: where the results of the last run are, and how to look at them."""

from __future__ import annotations

import os

import pandas as pd

from medcls.files import read_json
from medcls.pipeline import Project


def describe_project(project: Project) -> str:
    from medcls.registry import production_version

    name = project.params.registry.model_name
    production = production_version(name)
    lines = [
        f"medcls results (data: {project.params.data.source})",
        f"  metrics      {_relative(project, project.metrics)}  {_metrics_line(project)}  (dvc metrics show)",
        f"  plots        {_relative(project, project.plots)}/  (dvc plots show, then open dvc_plots/index.html)",
        f"  validation   {_relative(project, project.validation / 'report.md')}",
        f"  production   {name} v{production.version if production else '- (none yet)'}  (medcls models)",
        f"  predictions  {_predictions_line(project)}",
        f"  MLflow UI    make ui, then http://127.0.0.1:5000 (store: {os.environ.get('MLFLOW_TRACKING_URI')})",
        "  Prefect UI   .venv/bin/prefect server start, then http://127.0.0.1:4200 (flow runs)",
    ]
    return "\n".join(lines)


def _metrics_line(project: Project) -> str:
    if not project.metrics.exists():
        return "(not computed yet: dvc repro)"
    test = read_json(project.metrics)["test"]
    return f"test AUC {test['auc']:.4f}, ACC {test['acc']:.4f}"


def _predictions_line(project: Project) -> str:
    predictions = project.outputs / "predictions.csv"
    if not predictions.exists():
        return "(none yet: medcls score)"
    rows = pd.read_csv(predictions, usecols=["decision"])
    to_review = int((rows["decision"] == "review").sum())
    queue = _relative(project, project.outputs / "review_queue.csv")
    return f"{_relative(project, predictions)} ({len(rows)} rows); {to_review} to review in {queue}"


def _relative(project: Project, path) -> str:
    return str(path.relative_to(project.root)) if path.is_relative_to(project.root) else str(path)
