"""Registered models as they are used: the Keras model of a version with its input contract and
its trust (the certified auto-label threshold, the out-of-distribution gate, the drift reference).

Scoring (and the promotion gate, scoring production on a candidate's images) prepares images by
the model's own contract (classes, preprocessing, DICOM conversion), never by params.yaml, so it
matches training exactly.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from medcls.config import DicomConfig, PreprocessConfig
from medcls.errors import RegistryError
from medcls.model.trust import Trust

PRODUCTION = "production"  # the alias of the version in production
TRUST_TAG = "trust"  # where in its run's artifacts a version's trust is
SUSPENDED_TAG = "auto_labelling_suspended"  # why audits stopped a version's auto labels
ALPHA_TAG, CONFIDENCE_TAG = "max_auto_error", "guarantee_confidence"  # the terms its auto labels were certified at


@dataclass(frozen=True)
class RegisteredModel:
    model: object
    name: str  # registered model name
    version: str
    class_names: list[str]
    preprocess: PreprocessConfig
    dicom: DicomConfig  # how DICOM files were converted for training
    trust: Trust | None = None  # None: registered before versions carried one
    acquisition: dict = field(default_factory=dict)  # what the training images were (medcls.data.preprocess)


def load_production_model(model_name: str) -> RegisteredModel:
    """The model behind `@production`, with its class names and preprocessing contract."""
    import mlflow

    version = production_version(model_name)
    if version is None:
        raise RegistryError(
            f"model '{model_name}' has no '{PRODUCTION}' version in {mlflow.get_tracking_uri()}; "
            "train one (dvc repro) or run `medcls promote VERSION`"
        )
    return load_model_version(model_name, str(version.version))  # pinned: the alias may move meanwhile


@functools.lru_cache(maxsize=2)
def load_model_version(model_name: str, version: str) -> RegisteredModel:
    """One registered version with its contract; cached, so each worker process loads it once."""
    import mlflow

    uri = f"models:/{model_name}/{version}"
    contract = mlflow.models.get_model_info(uri).metadata
    return RegisteredModel(
        mlflow.keras.load_model(uri),
        model_name,
        version,
        contract["class_names"],
        PreprocessConfig(**contract["preprocess"]),
        DicomConfig(**contract.get("dicom", {})),
        _load_trust(model_name, version),
        contract.get("acquisition", {}),
    )


def _load_trust(model_name: str, version: str) -> Trust | None:
    import mlflow

    registered = mlflow.MlflowClient().get_model_version(model_name, version)
    where = registered.tags.get(TRUST_TAG)
    if not where:
        return None
    with tempfile.TemporaryDirectory() as scratch:
        local = mlflow.artifacts.download_artifacts(run_id=registered.run_id, artifact_path=where, dst_path=scratch)
        return Trust.load(Path(local))


def suspension(model_name: str, version: str) -> str:
    """Why audits stopped this version's auto labels ("" while they hold); read afresh each time."""
    from mlflow import MlflowClient

    return MlflowClient().get_model_version(model_name, version).tags.get(SUSPENDED_TAG, "")


def production_version(model_name: str):
    """The ModelVersion behind `@production`, or None if the model or the alias does not exist."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return MlflowClient().get_model_version_by_alias(model_name, PRODUCTION)
    except MlflowException:
        return None
