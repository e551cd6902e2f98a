"""Train and evaluate on a tiny project: what MLflow records, and the metrics' definitions."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medcls.evaluate import classification_metrics, expected_calibration_error, flat_metrics
from medcls.files import read_json
from medcls.runtime import data_version
from medcls.train import fit_temperature, load_training


def test_training_run_records_params_curves_data_version_and_model(trained_project):
    training = load_training(trained_project.models)
    run = mlflow.get_run(training["run_id"])
    assert run.data.params["train.epochs"] == "1"
    assert run.data.params["data.source"] == "synthetic"
    assert run.data.tags["data_version"] == data_version(trained_project.raw)
    assert run.data.tags["data_version"].endswith(".dir")
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


def test_metrics_file_follows_the_contract(trained_project):
    metrics = read_json(trained_project.metrics)
    for split in ("val", "test"):
        assert 0.0 <= metrics[split]["auc"] <= 1.0
        assert 0.0 <= metrics[split]["acc"] <= 1.0
        assert set(metrics[split]["per_class"]) == {"calcification", "nodule", "normal", "reticular"}
    assert (trained_project.plots / "confusion.csv").exists()
    assert (trained_project.plots / "training_curves.png").exists()


def test_auc_and_acc_are_computed_as_medmnist_does():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    scores = rng.random((300, 3)) + np.eye(3)[y] * 0.8
    probabilities = scores / scores.sum(axis=1, keepdims=True)
    metrics = classification_metrics(y, probabilities, ["a", "b", "c"], bins=10)
    expected = np.mean([roc_auc_score(y == k, probabilities[:, k]) for k in range(3)])
    assert metrics["auc"] == pytest.approx(expected)
    assert metrics["acc"] == pytest.approx((probabilities.argmax(1) == y).mean())
    sensitivity_a = ((probabilities.argmax(1) == 0) & (y == 0)).sum() / (y == 0).sum()
    assert metrics["per_class"]["a"]["sensitivity"] == pytest.approx(sensitivity_a)
    # Two classes: the macro AUC equals the positive class's AUC, as in MedMNIST's getAUC.
    binary = np.column_stack([1 - probabilities[:, 0], probabilities[:, 0]])
    assert classification_metrics(y == 0, binary, ["no", "yes"], 10)["auc"] == pytest.approx(
        roc_auc_score(y == 0, probabilities[:, 0])
    )


def test_calibration_error():
    y = np.array([0, 0, 0, 1])
    confident = np.array([[1.0, 0.0]] * 3 + [[0.0, 1.0]])
    assert expected_calibration_error(y, confident, bins=10) == pytest.approx(0.0)
    overconfident = np.array([[0.9, 0.1]] * 4)  # 90 % sure, 75 % right
    assert expected_calibration_error(y, overconfident, bins=10) == pytest.approx(0.15)


def test_flat_metric_names_are_valid_mlflow_keys():
    flat = flat_metrics({"test": {"auc": 0.9, "per_class": {"immature granulocyte (IG)": {"auc": 0.8, "support": 3}}}})
    assert flat == {"test_auc": 0.9, "test_auc_immature granulocyte _IG_": 0.8}


def test_logged_model_gives_the_calibrated_probabilities(trained_project):
    from scipy.special import softmax

    from medcls.model import logits_model
    from medcls.preprocess import load_split

    training = load_training(trained_project.models)
    x, _, _ = load_split(trained_project.processed, "test")
    logged = mlflow.keras.load_model(training["model_uri"])
    logits = logits_model(logged).predict(x[:8].astype(np.float32), verbose=0)
    expected = softmax(logits / training["temperature"], axis=1)
    np.testing.assert_allclose(logged.predict(x[:8].astype(np.float32), verbose=0), expected, atol=1e-5)


def test_temperature_scaling_recovers_the_temperature_of_the_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, (4000, 4))
    scaled = np.exp(logits / 2.0)
    probabilities = scaled / scaled.sum(axis=1, keepdims=True)
    y = np.array([rng.choice(4, p=p) for p in probabilities])  # labels drawn at temperature 2
    assert fit_temperature(logits, y) == pytest.approx(2.0, rel=0.1)
