"""`medcls summary`: where the results of the last run are, and how to look at them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from medcls.catalog import (
    AUTO,
    OUT_OF_DISTRIBUTION,
    REVIEW,
    ProjectPaths,
    ScoringOutputs,
    TrustFiles,
    ValidationReports,
)
from medcls.config import Params
from medcls.model.guarantee import Guarantee
from medcls.registry import production_version
from medcls.scoring import read_predictions
from medcls.support.files import read_json


@dataclass(frozen=True)
class SummaryLine:
    what: str
    where: str
    detail: str


def describe_project(params: Params, paths: ProjectPaths) -> list[SummaryLine]:
    name = params.registry.model_name
    production = production_version(name)
    outputs = ScoringOutputs(paths.outputs)
    store = os.environ.get("MLFLOW_TRACKING_URI")
    return [
        SummaryLine("metrics", _relative(paths, paths.metrics), f"{_metrics(paths.metrics)}  (dvc metrics show)"),
        SummaryLine("plots", f"{_relative(paths, paths.plots)}/", "dvc plots show, then open dvc_plots/index.html"),
        SummaryLine("validation", _relative(paths, ValidationReports(paths.validation).report), ""),
        SummaryLine("production", f"{name} v{production.version if production else '- (none yet)'}", "medcls models"),
        SummaryLine("auto labels", _relative(paths, TrustFiles(paths.trust).guarantee), _guarantee(paths)),
        SummaryLine("predictions", _relative(paths, outputs.predictions), _predictions(paths, outputs)),
        SummaryLine("MLflow UI", "make ui, then http://127.0.0.1:5000", f"store: {store}"),
        SummaryLine("Prefect UI", "make prefect-ui, then http://127.0.0.1:4200", "flow runs and deployments"),
    ]


def _metrics(path: Path) -> str:
    if not path.exists():
        return "not computed yet: dvc repro"
    test = read_json(path)["test"]
    return f"test AUC {test['auc']:.4f}, ACC {test['acc']:.4f}"


def _predictions(paths: ProjectPaths, outputs: ScoringOutputs) -> str:
    predictions = read_predictions(outputs.predictions)
    if predictions.empty:
        return "none yet: medcls score"
    decisions = predictions["decision"].value_counts()
    auto, review, outside = (int(decisions.get(key, 0)) for key in (AUTO, REVIEW, OUT_OF_DISTRIBUTION))
    queue = _relative(paths, outputs.review_queue)
    return f"{len(predictions)} rows: {auto} auto, {review} to review, {outside} out of distribution ({queue})"


def _guarantee(paths: ProjectPaths) -> str:
    """What the last evaluated model's auto labels promise, in short."""
    path = TrustFiles(paths.trust).guarantee
    if not path.exists():
        return "not certified yet: dvc repro"
    return Guarantee.from_dict(read_json(path)).brief()


def _relative(paths: ProjectPaths, path: Path) -> str:
    return str(path.relative_to(paths.root)) if path.is_relative_to(paths.root) else str(path)
