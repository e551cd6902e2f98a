"""Train and evaluate on a tiny project: what MLflow records, and the metrics' definitions."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from medcls.data.preprocess import load_split
from medcls.model.evaluate import classification_metrics
from medcls.model.network import logits_model
from medcls.model.record import load_trained_model, load_training
from medcls.support.files import read_json
from medcls.support.versioning import data_version


def test_training_run_records_params_curves_data_version_and_model(trained_project):
    training = load_training(trained_project.paths.models)
    run = mlflow.get_run(training["run_id"])
    assert run.data.params["train.epochs"] == "1"
    assert run.data.params["data.source"] == "synthetic"
    assert run.data.tags["data_version"] == data_version(trained_project.paths.raw)
    assert run.data.tags["data_version"].endswith(".dir")
    datasets = {d.dataset.name: d.dataset.digest for d in run.inputs.dataset_inputs}  # the UI's Datasets column
    paths = trained_project.paths
    assert datasets == {"data/raw": data_version(paths.raw), "data/processed": data_version(paths.processed)}
    assert training["data_versions"] == datasets
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "epoch_val_auc")
    assert [m.step for m in history] == [0]
    assert {"train_seconds", "train_images_per_second", "test_auc", "val_acc", "temperature"} <= set(run.data.metrics)
    assert {"test_ece", "test_ece_uncalibrated", "forward_mflops_per_image"} <= set(run.data.metrics)
    assert run.data.tags["device"] == "CPU" and run.data.tags["precision"] == "float32"
    assert run.info.run_name.startswith("synthetic-28px-w8-16x1-adamw-e1-")
    info = mlflow.models.get_model_info(training["model_uri"])
    assert info.metadata["class_names"] == ["calcification", "nodule", "normal", "reticular"]
    assert info.metadata["preprocess"]["image_size"] == 28
    assert info.metadata["temperature"] == training["temperature"] > 0
    assert info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 28, 28, 1)
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "plots")}
    assert {"plots/confusion_matrix.png", "plots/roc_curves.png", "plots/reliability.png"} <= artifacts


def test_metrics_file_holds_the_saved_models_figures_on_each_split(trained_project):
    """reports/metrics.json is what the saved model scores on the processed val and test arrays."""
    metrics = read_json(trained_project.paths.metrics)
    model = load_trained_model(trained_project.paths.models)
    class_names = load_training(trained_project.paths.models)["class_names"]
    for split in ("val", "test"):
        x, y, _ = load_split(trained_project.paths.processed, split)
        probabilities = model.predict(x.astype(np.float32), verbose=0).astype(np.float64)
        expected = classification_metrics(y, probabilities, class_names, bins=15)
        assert metrics[split]["n"] == len(y)
        assert metrics[split]["auc"] == pytest.approx(expected["auc"], abs=1e-4)
        assert metrics[split]["acc"] == pytest.approx(expected["acc"])
        assert list(metrics[split]["per_class"]) == class_names
    confusion = pd.read_csv(trained_project.paths.plots / "confusion.csv")
    assert len(confusion) == metrics["test"]["n"]
    assert (confusion["actual"] == confusion["predicted"]).mean() == pytest.approx(metrics["test"]["acc"])
    assert (trained_project.paths.plots / "training_curves.png").stat().st_size > 0


def test_logged_model_gives_the_calibrated_probabilities(trained_project):
    from scipy.special import softmax

    training = load_training(trained_project.paths.models)
    x, _, _ = load_split(trained_project.paths.processed, "test")
    logged = mlflow.keras.load_model(training["model_uri"])
    logits = logits_model(logged).predict(x[:8].astype(np.float32), verbose=0)
    expected = softmax(logits / training["temperature"], axis=1)
    np.testing.assert_allclose(logged.predict(x[:8].astype(np.float32), verbose=0), expected, atol=1e-5)
