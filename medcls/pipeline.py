"""The pipeline's steps: each hands one stage its params section and project paths.

The CLI (and through it `dvc.yaml`) and the Prefect flows call these same functions, so a run
from either gives the same result. Stage modules are imported inside each step to keep
`medcls --help` fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from medcls.config import Params, load_params
from medcls.runtime import setup_runtime

if TYPE_CHECKING:
    from medcls.audit import AuditResult
    from medcls.evaluate import EvaluationResult
    from medcls.ingest import IngestResult
    from medcls.preprocess import PreprocessResult
    from medcls.registry import RegistrationResult
    from medcls.review import ImportResult
    from medcls.score import ScoreResult
    from medcls.train import TrainResult
    from medcls.validate import ValidationReport


@dataclass(frozen=True)
class Project:
    """Where everything lives: fixed paths under the folder that holds `params.yaml`."""

    root: Path
    params: Params

    raw = property(lambda self: self.root / "data" / "raw")
    reviewed = property(lambda self: self.root / "data" / "reviewed")  # the labelled pool (medcls.review)
    processed = property(lambda self: self.root / "data" / "processed")
    models = property(lambda self: self.root / "models")
    validation = property(lambda self: self.root / "reports" / "validation")
    metrics = property(lambda self: self.root / "reports" / "metrics.json")
    plots = property(lambda self: self.root / "reports" / "plots")
    history = property(lambda self: self.root / "reports" / "training_history.csv")
    registration = property(lambda self: self.root / "reports" / "registry.json")
    inbox = property(lambda self: self.root / self.params.score.inbox)
    outputs = property(lambda self: self.root / self.params.score.output_dir)


def open_project(params_path: Path | str = "params.yaml") -> Project:
    """Load params and set up the process (logging, MLflow store, seeds) for a run."""
    params_path = Path(params_path).resolve()
    params = load_params(params_path)
    setup_runtime(params_path.parent, params.seed)
    return Project(params_path.parent, params)


def ingest(project: Project) -> IngestResult:
    from medcls.ingest import ingest_data

    return ingest_data(
        project.params.data, project.raw, seed=project.params.seed, base_dir=project.root, reviewed_dir=project.reviewed
    )


def validate(project: Project) -> ValidationReport:
    from medcls.validate import validate_data

    return validate_data(project.params.validation, project.raw, project.validation)


def preprocess(project: Project) -> PreprocessResult:
    from medcls.preprocess import preprocess_data

    return preprocess_data(project.params.preprocess, project.raw, project.processed)


def train(project: Project) -> TrainResult:
    from medcls.runtime import data_version
    from medcls.train import train_model

    return train_model(
        project.params.train,
        project.processed,
        project.models,
        project.history,
        seed=project.params.seed,
        run_params=project.params.flat(),
        data_version=data_version(project.raw),
    )


def evaluate(project: Project) -> EvaluationResult:
    from medcls.evaluate import evaluate_model

    return evaluate_model(
        project.params.evaluate, project.models, project.processed, project.metrics, project.plots, project.history
    )


def register(project: Project) -> RegistrationResult:
    from medcls.registry import register_model

    return register_model(project.params.registry, project.models, project.metrics, project.registration)


def score(project: Project, inbox: Path | None = None, out_dir: Path | None = None) -> ScoreResult:
    from medcls.score import load_production_model, score_inbox

    production = load_production_model(project.params.registry.model_name)
    return score_inbox(project.params.score, production, inbox or project.inbox, out_dir or project.outputs)


def demo_inbox(project: Project, count: int | None = None) -> list[Path]:
    from medcls.score import make_demo_inbox

    count = count or project.params.score.demo_images
    return make_demo_inbox(project.raw, project.inbox, count, project.params.seed)


def review_init(project: Project) -> Path:
    from medcls.review import ensure_pool

    return ensure_pool(project.reviewed)


def review_import(project: Project, reviews_path: Path) -> ImportResult:
    import pandas as pd

    from medcls.audit import audit_queue
    from medcls.errors import DataError
    from medcls.review import import_reviews, read_reviews
    from medcls.score import PREDICTIONS, read_table

    predictions = pd.concat([read_table(project.outputs / PREDICTIONS), audit_queue(project.outputs)])
    if predictions.empty:
        raise DataError(f"{project.outputs / PREDICTIONS}: no predictions yet; run `medcls score` first")
    return import_reviews(read_reviews(reviews_path, _class_names(project, predictions)), predictions, project.reviewed)


def _class_names(project: Project, predictions) -> list[str]:
    """The labels a reviewer may give: the data set's classes (audit rows carry no probability
    columns), or the scoring model's where this project holds no data."""
    from medcls.files import read_json
    from medcls.ingest import DATASET

    if (project.raw / DATASET).exists():
        return list(read_json(project.raw / DATASET)["class_names"])
    return [column.removeprefix("prob_") for column in predictions.columns if column.startswith("prob_")]


def audit(project: Project) -> AuditResult:
    from medcls.audit import audit_labels

    return audit_labels(project.models, project.processed, project.raw, project.outputs, seed=project.params.seed)
