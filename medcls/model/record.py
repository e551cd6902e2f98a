"""What the train stage leaves in `models/`: the Keras model and `training.json` (MLflow run id,
logged model URI, input contract, temperature), read by evaluate, register and the label audit."""

from __future__ import annotations

from pathlib import Path

from medcls.catalog import ModelFiles
from medcls.errors import DataError
from medcls.support.files import read_json


def load_training(model_dir: Path) -> dict:
    """What `train_model` recorded: run id, model URI, class names, preprocessing contract."""
    path = ModelFiles(model_dir).training
    if not path.exists():
        raise DataError(f"{path}: missing; run `medcls train` first")
    return read_json(path)


def load_trained_model(model_dir: Path):
    """The trained (calibrated) Keras model."""
    import keras

    return keras.saving.load_model(ModelFiles(model_dir).model)
