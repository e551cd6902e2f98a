"""What audits of a version's auto labels found, kept on the version in the registry: the counts,
the evidence, and, once the evidence says the error exceeds the guarantee, the suspension that
stops the version's auto labels (scoring reads it afresh each run; `medcls models` shows it)."""

from __future__ import annotations

from medcls.registry.models import ALPHA_TAG, CONFIDENCE_TAG, SUSPENDED_TAG


def guarantee_terms(model_name: str, version: str) -> tuple[float, float] | None:
    """(alpha, delta) the version's auto labels were certified at; None if it has no guarantee."""
    tags = _tags(model_name, version)
    if tags is None or ALPHA_TAG not in tags or CONFIDENCE_TAG not in tags:
        return None
    return float(tags[ALPHA_TAG]), 1 - float(tags[CONFIDENCE_TAG])


def record_audits(model_name: str, version: str, audited: int, wrong: int, evidence: float, suspend: str) -> bool:
    """Keep the audit figures on the version and, with a reason in `suspend`, stop its auto labels
    (a suspension is never lifted: a new version must be registered). False if the version is gone."""
    from mlflow import MlflowClient

    tags = _tags(model_name, version)
    if tags is None:
        return False
    client = MlflowClient()
    figures = {"audited_auto_labels": audited, "audited_wrong": wrong, "audit_evidence": f"{evidence:.4g}"}
    for key, value in figures.items():
        client.set_model_version_tag(model_name, version, key, str(value))
    if suspend and not tags.get(SUSPENDED_TAG):
        client.set_model_version_tag(model_name, version, SUSPENDED_TAG, suspend)
    return True


def _tags(model_name: str, version: str) -> dict[str, str] | None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return dict(MlflowClient().get_model_version(model_name, version).tags)
    except MlflowException:
        return None
