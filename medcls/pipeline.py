"""The one seam between the domain code and whatever drives it: one step per command.

The CLI (and through it `dvc.yaml`) and the Prefect flows call these functions and nothing else.
Each step hands one stage its params section and the project's paths. Stage modules are imported
inside each step, so `medcls --help` does not wait for TensorFlow.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from medcls.catalog import ProjectPaths, ScoringOutputs
from medcls.config import Params, load_params
from medcls.runtime import setup_runtime

if TYPE_CHECKING:
    from medcls.data.ingest import IngestResult
    from medcls.data.preprocess import PreprocessResult
    from medcls.data.validate import ValidationReport
    from medcls.model.evaluate import EvaluationResult
    from medcls.model.train import TrainResult
    from medcls.registry import CheckoutResult, RegistrationResult, VersionSummary
    from medcls.review import AuditResult, ImportResult
    from medcls.scoring import ChunkMapper, ScoreResult
    from medcls.summary import SummaryLine


@dataclass(frozen=True)
class Project:
    """A project's params and where its files are (see medcls.catalog)."""

    params: Params
    paths: ProjectPaths


def open_project(params_path: Path | str = "params.yaml") -> Project:
    """Load params and set up the process (logging, MLflow store, seeds) for a run."""
    params_path = Path(params_path).resolve()
    params = load_params(params_path)
    setup_runtime(params_path.parent, params.seed)
    return project_of(params_path.parent, params)


def project_of(root: Path, params: Params) -> Project:
    """The project of `params` in the folder `root`."""
    return Project(params, ProjectPaths.under(root, params.score.inbox, params.score.output_dir))


def ingest(project: Project) -> IngestResult:
    from medcls.data.ingest import ingest_data

    paths = project.paths
    return ingest_data(
        project.params.data, paths.raw, seed=project.params.seed, base_dir=paths.root, reviewed_dir=paths.reviewed
    )


def validate(project: Project) -> ValidationReport:
    from medcls.data.validate import validate_data

    return validate_data(project.params.validation, project.paths.raw, project.paths.validation)


def preprocess(project: Project) -> PreprocessResult:
    from medcls.data.preprocess import preprocess_data

    return preprocess_data(project.params.preprocess, project.paths.raw, project.paths.processed)


def train(project: Project) -> TrainResult:
    from medcls.model.train import train_model

    paths = project.paths
    return train_model(
        project.params.train,
        paths.processed,
        paths.models,
        paths.history,
        seed=project.params.seed,
        run_params=project.params.flat(),
        data_versions={"data/raw": paths.raw, "data/processed": paths.processed},
    )


def evaluate(project: Project) -> EvaluationResult:
    from medcls.model.evaluate import EvaluatedPaths, evaluate_model

    paths = project.paths
    out = EvaluatedPaths(paths.metrics, paths.plots, paths.history, paths.trust)
    return evaluate_model(project.params.evaluate, project.params.score, paths.models, paths.processed, out)


def register(project: Project) -> RegistrationResult:
    from medcls.registry import register_model

    paths = project.paths
    return register_model(
        project.params.registry,
        paths.models,
        paths.metrics,
        paths.registration,
        processed_dir=paths.processed,
        raw_dir=paths.raw,
        trust_dir=paths.trust,
        lock_file=paths.dvc_lock,
    )


def stages(project: Project) -> list[str]:
    """The stages of dvc.yaml, in the order they run."""
    from medcls.support.versioning import pipeline_stages

    return pipeline_stages(project.paths.root)


def reproduce(project: Project, stage: str) -> bool:
    """Reproduce one dvc.yaml stage through DVC (skipped when nothing it depends on changed);
    True if it ran. dvc.lock and the DVC cache are updated as by `dvc repro`."""
    from medcls.support.versioning import reproduce_stage

    return reproduce_stage(project.paths.root, stage)


def push(project: Project) -> str | None:
    """Push data, models and reports to the default DVC remote; its name, or None without one."""
    from medcls.support.versioning import push as push_outputs

    return push_outputs(project.paths.root)


def outcome(project: Project) -> dict:
    """What the training pipeline left: the metrics and the registry's decision."""
    from medcls.support.files import read_json

    paths = project.paths
    return {
        "metrics": read_json(paths.metrics) if paths.metrics.exists() else None,
        "registration": read_json(paths.registration) if paths.registration.exists() else None,
    }


def score(
    project: Project, inbox: Path | None = None, out_dir: Path | None = None, map_chunks: ChunkMapper = map
) -> ScoreResult:
    """Score the inbox with the production model; `map_chunks` runs the chunks (here, one by one;
    the Prefect flow passes its task runner's map)."""
    from medcls.data.images import ImageLimits
    from medcls.scoring import load_production_model, score_inbox, suspension

    production = load_production_model(project.params.registry.model_name)
    suspended = suspension(production.name, production.version)  # read afresh: audits may have stopped it
    inbox, out_dir = inbox or project.paths.inbox, out_dir or project.paths.outputs
    limits = ImageLimits.of(project.params.data)  # the same guards as at ingest
    return score_inbox(project.params.score, production, inbox, out_dir, map_chunks, limits, suspended)


def demo_inbox(project: Project, count: int | None = None) -> list[Path]:
    from medcls.data.demo import make_demo_inbox

    count = count or project.params.score.demo_images
    return make_demo_inbox(project.paths.raw, project.paths.inbox, count, project.params.seed)


def review_init(project: Project) -> Path:
    from medcls.review import ensure_pool

    return ensure_pool(project.paths.reviewed)


def review_import(project: Project, reviews_path: Path) -> ImportResult:
    from medcls.review import check_audited_labels, import_review_file
    from medcls.scoring import read_predictions

    paths, params = project.paths, project.params
    predictions = read_predictions(ScoringOutputs(paths.outputs).predictions)
    dicom = params.data.dicom  # how DICOM files become pixels, to find the scored ones again
    result = import_review_file(reviews_path, predictions, paths.outputs, paths.raw, paths.reviewed, dicom)
    # The doctors' answers on audited auto labels test each version's guarantee, after every import.
    audits = check_audited_labels(params.registry.model_name, predictions, paths.reviewed, params.score)
    return dataclasses.replace(result, audits=audits)


def audit(project: Project) -> AuditResult:
    from medcls.review import audit_labels

    paths = project.paths
    return audit_labels(paths.models, paths.processed, paths.raw, paths.outputs, seed=project.params.seed)


def promote(project: Project, version: str, reason: str) -> str:
    """Move production to `version` by hand; returns the version that was in production ("" if none)."""
    from medcls.registry import promote as promote_version

    return promote_version(project.params.registry.model_name, version, reason)


def rollback(project: Project, reason: str) -> str:
    """Move production back to the version before; returns it."""
    from medcls.registry import rollback as rollback_version

    return rollback_version(project.params.registry.model_name, reason)


def checkout(project: Project, version: str) -> CheckoutResult:
    """Bring back a registered version's data/raw, data/processed and models from the DVC cache
    or remote, and its dvc.lock."""
    from medcls.registry import checkout_version

    return checkout_version(project.params.registry.model_name, version, project.paths.root)


def models(project: Project) -> list[VersionSummary]:
    from medcls.registry import list_versions

    return list_versions(project.params.registry.model_name)


def summary(project: Project) -> list[SummaryLine]:
    from medcls.summary import describe_project

    return describe_project(project.params, project.paths)


def presets(params_path: Path) -> dict[str, str]:
    """The presets beside a params file: name -> what it is for."""
    from medcls.presets import list_presets

    return list_presets(ProjectPaths.under(params_path.resolve().parent).presets)


def apply_preset(params_path: Path, name: str) -> dict[str, tuple[object, object]]:
    """Write preset `name` (or a preset file's path) into params.yaml; returns what changed."""
    from medcls.presets import apply_preset as apply

    given = Path(name)
    if given.suffix not in (".yaml", ".yml"):
        given = ProjectPaths.under(params_path.resolve().parent).presets / f"{name}.yaml"
    return apply(given, params_path)
