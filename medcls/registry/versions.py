"""Register stage and production management in the MLflow Model Registry.

Production is the alias `production`. Every move of the alias happens under the registry lock
(`lock`), after re-reading where it points, and is pushed onto a history kept as a tag of the
registered model, so `rollback` returns to the version that served before and no move is lost to
a race. The (deprecated) registry stage `Production` follows the alias for tools that still load
`models:/<name>/Production`. Each version carries its lineage: the data versions it was trained
on and, when it was built by `dvc repro`, the dvc.lock that restores them (`checkout`); and its
trust (medcls.model.trust), logged to its run under `trust/v<version>` and summed up in tags: the
certified auto-label threshold, alpha, delta, calibration size and expected coverage.
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
from medcls.model.guarantee import Guarantee
from medcls.model.record import load_training
from medcls.model.trust import Trust
from medcls.registry.comparison import candidate_figures, figures_on_candidate_images
from medcls.registry.gate import Figures, promotion_decision
from medcls.registry.lock import registry_lock
from medcls.registry.models import (
    ALPHA_TAG,
    CONFIDENCE_TAG,
    SUSPENDED_TAG,
    TRUST_TAG,
    load_model_version,
    production_version,
)
from medcls.support.files import read_json, write_json
from medcls.support.versioning import locked_hashes

HISTORY_TAG = "production_history"
CLASSES_TAG = "class_names"
LINEAGE_DIR = "lineage"  # in the training run's artifacts: the dvc.lock the version was built from
RAW = "data/raw"
_ATTEMPTS = 3  # decisions retaken when production moved under a registration (a remote store)


@dataclass(frozen=True)
class RegistrationResult:
    model_name: str
    version: str
    promoted: bool
    reason: str
    candidate: dict  # the candidate's validation figures
    production: dict | None  # production's, on the same images (None: there was none)
    production_version: str  # in production after this decision
    lineage: str  # where the dvc.lock this version was built from is, or why there is none
    auto_labels: str = ""  # what its certified threshold promises, or why nothing is auto-labelled


@dataclass(frozen=True)
class VersionSummary:
    version: str
    run_id: str
    val_auc: float | None
    test_auc: float | None
    created: str
    production: bool
    auto_labels: str = ""  # certified, none certified, or suspended by audits (and why)


def register_model(
    cfg: RegistryConfig,
    model_dir: Path,
    metrics_path: Path,
    out_path: Path,
    *,
    processed_dir: Path,
    raw_dir: Path,
    trust_dir: Path,
    lock_file: Path | None = None,
) -> RegistrationResult:
    """Register the trained model with its lineage and trust, then, under the registry lock,
    measure production on the candidate's validation images and move `production` to the
    candidate only if it passes the gate (where the candidate is production's network with its
    trust rebuilt, for new guarantee params say, it need not beat itself)."""
    training = load_training(model_dir)
    metrics = read_json(metrics_path)
    version = _new_version(cfg.model_name, training, metrics)
    lineage = _attach_lineage(cfg.model_name, version, training, lock_file)
    guarantee = _attach_trust(cfg.model_name, version, training["run_id"], trust_dir)
    candidate = candidate_figures(version, training["class_names"], metrics)
    with registry_lock(cfg.model_name):
        for _ in range(_ATTEMPTS):
            current = production_version(cfg.model_name)
            production = _measured(cfg.model_name, current, processed_dir, raw_dir)
            same_network = current is not None and current.run_id == training["run_id"]
            promoted, reason = promotion_decision(candidate, production, cfg, same_network)
            if not promoted or _move_if_still(cfg.model_name, current, version, reason):
                break
        else:
            promoted, reason = False, f"kept in staging: production moved {_ATTEMPTS} times while this was decided"
        _client().set_model_version_tag(cfg.model_name, version, "promotion_decision", reason)
        _client().set_model_version_tag(
            cfg.model_name, version, "compared_with", json.dumps(asdict(production)) if production else ""
        )
    result = RegistrationResult(
        model_name=cfg.model_name,
        version=version,
        promoted=promoted,
        reason=reason,
        candidate=asdict(candidate),
        production=asdict(production) if production else None,
        production_version=version if promoted else (production.version if production else ""),
        lineage=lineage,
        auto_labels=guarantee.describe(),
    )
    write_json(out_path, asdict(result))
    return result


def promote(model_name: str, version: str, reason: str) -> str:
    """Move production to `version` by hand; returns the version that was in production."""
    from mlflow.exceptions import MlflowException

    try:
        _client().get_model_version(model_name, version)
    except MlflowException:
        raise RegistryError(f"model '{model_name}' has no version {version}") from None
    with registry_lock(model_name):
        previous = production_version(model_name)
        _move_production(model_name, version, reason, _pushed(_history(model_name), version))
    return str(previous.version) if previous else ""


def rollback(model_name: str, reason: str) -> str:
    """Move production back to the version that served before the current one; returns it."""
    with registry_lock(model_name):
        history = _history(model_name)
        if len(history) < 2:
            raise RegistryError(f"model '{model_name}' has no earlier production version to roll back to")
        _move_production(model_name, history[-2], reason, history[:-1])
    return history[-2]


def production_history(model_name: str) -> list[str]:
    """The versions that were put in production, in order; the last one serves now."""
    return _history(model_name)


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
            auto_labels=_auto_label_status(v.tags),
        )
        for v in sorted(versions, key=lambda v: int(v.version))
    ]


def _new_version(model_name: str, training: dict, metrics: dict) -> str:
    import mlflow

    tags = {f"{split}_{key}": str(metrics[split][key]) for split in ("val", "test") for key in ("auc", "acc")}
    tags |= {CLASSES_TAG: json.dumps(training["class_names"]), "data_version": training["data_versions"][RAW]}
    return str(mlflow.register_model(training["model_uri"], model_name, tags=tags).version)


def _attach_lineage(model_name: str, version: str, training: dict, lock_file: Path | None) -> str:
    """Log the dvc.lock the model was built from to its run, if it is that lock: one whose
    data/raw is the data the model was trained on (a model trained outside `dvc repro` has none)."""
    data = training["data_versions"][RAW]
    if lock_file is None or not lock_file.is_file():
        lineage = "none: trained outside a DVC project"
    elif locked_hashes(lock_file.read_text(encoding="utf-8")).get(RAW) != data:
        lineage = f"none: {lock_file.name} records another {RAW} than the model was trained on"
    else:
        _client().log_artifact(training["run_id"], str(lock_file), LINEAGE_DIR)
        lineage = f"{LINEAGE_DIR}/{lock_file.name}"
    _client().set_model_version_tag(model_name, version, "dvc_lock", lineage)
    return lineage


def _attach_trust(model_name: str, version: str, run_id: str, trust_dir: Path) -> Guarantee:
    """Log the trust evaluate built to the run, for this version (another version of the same run
    may carry another), and sum its guarantee up in the version's tags."""
    trust = Trust.load(trust_dir)
    where = f"{TRUST_TAG}/v{version}"
    client = _client()
    client.log_artifacts(run_id, str(trust_dir), where)
    guarantee = trust.guarantee
    tags = {
        TRUST_TAG: where,
        "auto_labels": guarantee.describe(),
        "auto_labels_certified": str(guarantee.certified).lower(),
        "auto_label_threshold": _threshold_tag(guarantee),
        ALPHA_TAG: str(guarantee.alpha),
        CONFIDENCE_TAG: str(round(1 - guarantee.delta, 6)),
        "calibration_images": str(guarantee.calibration_images),
        "expected_auto_share": f"{guarantee.expected_coverage:.4f}",
    }
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, value)
    return guarantee


def _threshold_tag(guarantee: Guarantee) -> str:
    if guarantee.mode == "per_class":
        return json.dumps(guarantee.class_thresholds)
    return "none certified" if guarantee.threshold is None else str(guarantee.threshold)


def _auto_label_status(tags: dict[str, str]) -> str:
    """A version's auto labels in a few words, for `medcls models`."""
    if tags.get(SUSPENDED_TAG):
        return f"suspended: {tags[SUSPENDED_TAG]}"
    if TRUST_TAG not in tags:
        return "none: registered without a certified threshold"
    if tags.get("auto_labels_certified") != "true":
        return "none: no threshold certified (too few calibration images)"
    threshold = tags.get("auto_label_threshold", "")
    at = "a threshold per class" if threshold.startswith("{") else f"confidence >= {threshold}"
    share = float(tags.get("expected_auto_share", 0))
    confidence = float(tags.get(CONFIDENCE_TAG, 0))
    return f"error <= {tags.get('max_auto_error')} ({confidence:.0%}) at {at}, ~{share:.0%} auto"


def _measured(model_name: str, current, processed_dir: Path, raw_dir: Path) -> Figures | None:
    if current is None:
        return None
    production = load_model_version(model_name, str(current.version))
    return figures_on_candidate_images(production, processed_dir, raw_dir)


def _move_if_still(model_name: str, expected, version: str, reason: str) -> bool:
    """Move production to `version` if it is still `expected` (compare and set); False if it moved."""
    now = production_version(model_name)
    if (now and str(now.version)) != (expected and str(expected.version)):
        return False
    _move_production(model_name, version, reason, _pushed(_history(model_name), version))
    return True


def _move_production(model_name: str, version: str, reason: str, history: list[str]) -> None:
    """Alias, legacy stage, audit tags, then the new history (the alias is what scoring reads)."""
    from medcls.registry.models import PRODUCTION

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
    from mlflow.exceptions import MlflowException

    try:
        tags = _client().get_registered_model(model_name).tags
    except MlflowException:
        return []
    return json.loads(tags.get(HISTORY_TAG, "[]"))


def _float(value: str | None) -> float | None:
    return None if value in (None, "", "None") else float(value)


def _client():
    from mlflow import MlflowClient

    return MlflowClient()
