"""Register stage and production management in the MLflow Model Registry.

Production is the alias `production`. Every move of the alias is pushed onto a history kept as
a tag of the registered model, so `rollback` returns to the version that served before. The
(deprecated) registry stage `Production` follows the alias for tools that still load
`models:/<name>/Production`.
"""

from __future__ import annotations

import getpass
import json
import warnings
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from medcls.config import RegistryConfig
from medcls.errors import RegistryError
from medcls.model.record import load_training
from medcls.registry.gate import Contender, promotion_decision
from medcls.support.files import read_json, write_json

PRODUCTION = "production"
HISTORY_TAG = "production_history"
CLASSES_TAG = "class_names"


@dataclass(frozen=True)
class RegistrationResult:
    model_name: str
    version: str
    promoted: bool
    reason: str
    candidate_val_auc: float
    production_val_auc: float | None  # the version in production before this decision
    production_version: str  # in production after this decision


@dataclass(frozen=True)
class VersionSummary:
    version: str
    run_id: str
    val_auc: float | None
    test_auc: float | None
    created: str
    production: bool


def register_model(cfg: RegistryConfig, model_dir: Path, metrics_path: Path, out_path: Path) -> RegistrationResult:
    """Register the trained model; move `production` to it only if it beats production on val AUC."""
    import mlflow

    training = load_training(model_dir)
    metrics = read_json(metrics_path)
    tags = {f"{split}_{key}": str(metrics[split][key]) for split in ("val", "test") for key in ("auc", "acc")}
    tags |= {"data_version": training.get("data_version", ""), CLASSES_TAG: json.dumps(training["class_names"])}
    version = str(mlflow.register_model(training["model_uri"], cfg.model_name, tags=tags).version)
    sensitivity = {name: figures["sensitivity"] for name, figures in metrics["val"]["per_class"].items()}
    candidate = Contender(version, float(metrics["val"]["auc"]), training["class_names"], sensitivity)
    production = _contender(production_version(cfg.model_name))
    promoted, reason = promotion_decision(candidate, production, cfg.min_auc_improvement, cfg.min_class_sensitivity)
    _client().set_model_version_tag(cfg.model_name, version, "promotion_decision", reason)
    if promoted:
        _move_production(cfg.model_name, version, reason, _pushed(_history(cfg.model_name), version))
    result = RegistrationResult(
        model_name=cfg.model_name,
        version=version,
        promoted=promoted,
        reason=reason,
        candidate_val_auc=candidate.val_auc,
        production_val_auc=production and production.val_auc,
        production_version=version if promoted else production.version,
    )
    write_json(out_path, asdict(result))
    return result


def production_version(model_name: str):
    """The ModelVersion behind `@production`, or None if the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return _client().get_model_version_by_alias(model_name, PRODUCTION)
    except MlflowException:
        return None


def promote(model_name: str, version: str, reason: str) -> str:
    """Move production to `version` by hand; returns the version that was in production."""
    from mlflow.exceptions import MlflowException

    previous = production_version(model_name)
    try:
        _client().get_model_version(model_name, version)
    except MlflowException:
        raise RegistryError(f"model '{model_name}' has no version {version}") from None
    _move_production(model_name, version, reason, _pushed(_history(model_name), version))
    return str(previous.version) if previous else ""


def rollback(model_name: str, reason: str) -> str:
    """Move production back to the version that served before the current one; returns it."""
    history = _history(model_name)
    if len(history) < 2:
        raise RegistryError(f"model '{model_name}' has no earlier production version to roll back to")
    _move_production(model_name, history[-2], reason, history[:-1])
    return history[-2]


def list_versions(model_name: str) -> list[VersionSummary]:
    client = _client()
    current = production_version(model_name)
    versions = client.search_model_versions(f"name = '{model_name}'")
    return [
        VersionSummary(
            version=str(v.version),
            run_id=v.run_id,
            val_auc=_float(v.tags.get("val_auc")),
            test_auc=_float(v.tags.get("test_auc")),
            created=datetime.fromtimestamp(v.creation_timestamp / 1000, UTC).isoformat(timespec="seconds"),
            production=current is not None and str(v.version) == str(current.version),
        )
        for v in sorted(versions, key=lambda v: int(v.version))
    ]


def _move_production(model_name: str, version: str, reason: str, history: list[str]) -> None:
    """Alias, legacy stage, audit tags, then the new history (the alias is what scoring reads)."""
    client = _client()
    client.set_registered_model_alias(model_name, PRODUCTION, version)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # stages are deprecated, still supported
        client.transition_model_version_stage(model_name, version, "Production", archive_existing_versions=True)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for key, value in {"promoted_at": now, "promoted_by": getpass.getuser(), "promotion_reason": reason}.items():
        client.set_model_version_tag(model_name, version, key, value)
    client.set_registered_model_tag(model_name, HISTORY_TAG, json.dumps(history))


def _pushed(history: list[str], version: str) -> list[str]:
    """History after `version` goes to production (re-promoting the current one adds nothing)."""
    return history if history[-1:] == [version] else [*history, version]


def _history(model_name: str) -> list[str]:
    tags = _client().get_registered_model(model_name).tags
    return json.loads(tags.get(HISTORY_TAG, "[]"))


def _contender(version) -> Contender | None:
    if version is None:
        return None
    classes = version.tags.get(CLASSES_TAG)
    return Contender(
        str(version.version), _float(version.tags.get("val_auc")), json.loads(classes) if classes else None
    )


def _float(value: str | None) -> float | None:
    return None if value in (None, "", "None") else float(value)


def _client():
    from mlflow import MlflowClient

    return MlflowClient()
