"""The model scoring uses: the registered version behind `@production`, with its input contract.

Scoring prepares images by the model's own contract (classes, preprocessing, DICOM conversion),
never by params.yaml, so it matches training exactly.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from medcls.config import DicomConfig, PreprocessConfig
from medcls.errors import RegistryError
from medcls.registry import PRODUCTION, production_version


@dataclass(frozen=True)
class ProductionModel:
    model: object
    name: str  # registered model name
    version: str
    class_names: list[str]
    preprocess: PreprocessConfig
    dicom: DicomConfig  # how DICOM files were converted for training


def load_production_model(model_name: str) -> ProductionModel:
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
def load_model_version(model_name: str, version: str) -> ProductionModel:
    """One registered version with its contract; cached, so each worker process loads it once."""
    import mlflow

    uri = f"models:/{model_name}/{version}"
    contract = mlflow.models.get_model_info(uri).metadata
    return ProductionModel(
        mlflow.keras.load_model(uri),
        model_name,
        version,
        contract["class_names"],
        PreprocessConfig(**contract["preprocess"]),
        DicomConfig(**contract.get("dicom", {})),
    )
