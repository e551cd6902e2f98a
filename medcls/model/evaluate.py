"""Evaluate stage: metrics on the validation and test splits, plots, all logged to the training
run; and the model's trust (medcls.model.trust): the certified auto-label threshold, the
out-of-distribution gate and the drift reference, built on the calibration split.

`auc` is the macro one-vs-rest ROC AUC and `acc` the top-1 accuracy, computed as MedMNIST does
(for two classes the macro AUC equals the positive class's AUC), so the figures compare with
the MedMNIST v2 benchmark. Beside them, each split says what scoring would have done with its
images: the share auto-labelled, the error among those labels, and the share the gate rejects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medcls.catalog import CALIBRATION, Plots
from medcls.config import EvaluateConfig, ScoreConfig
from medcls.data.preprocess import load_split
from medcls.model.calibration import expected_calibration_error
from medcls.model.plots import save_confusion_matrix, save_reliability_diagram, save_roc_curves, save_training_curves
from medcls.model.record import load_trained_model, load_training
from medcls.model.trust import ModelOutputs, Trust, build_trust, model_outputs
from medcls.support.files import staged_dir, write_json, write_table

EVALUATED_SPLITS = ("val", "test")


@dataclass(frozen=True)
class EvaluationResult:
    metrics_path: Path
    plots_dir: Path
    metrics: dict
    trust_dir: Path
    auto_labels: str  # what the certified threshold promises, in words


@dataclass(frozen=True)
class EvaluatedPaths:
    metrics: Path
    plots: Path
    history: Path
    trust: Path


def evaluate_model(
    cfg: EvaluateConfig, score: ScoreConfig, model_dir: Path, processed_dir: Path, out: EvaluatedPaths
) -> EvaluationResult:
    """Predict val and test, build the model's trust from the calibration split, write
    `metrics.json`, the plots and `reports/trust/`, log the figures and plots to the MLflow run."""
    training = load_training(model_dir)
    class_names = training["class_names"]
    model = load_trained_model(model_dir)
    temperature = training["temperature"]
    # One pass of the network over each split gives everything below.
    outputs = {split: model_outputs(model, *load_split(processed_dir, split)[:2])
               for split in ("train", CALIBRATION, *EVALUATED_SPLITS)}  # fmt: skip
    metrics, uncalibrated = {}, {}
    for split in EVALUATED_SPLITS:
        y, probabilities = outputs[split].labels, outputs[split].probabilities
        metrics[split] = classification_metrics(y, probabilities, class_names, cfg.calibration_bins)
        # Before temperature scaling, to show what calibration bought (the class never changes).
        uncalibrated[split] = without_temperature(probabilities, temperature)
        metrics[split]["ece_uncalibrated"] = expected_calibration_error(y, uncalibrated[split], cfg.calibration_bins)
        metrics[split]["temperature"] = temperature
    trust = build_trust(
        outputs["train"], outputs["val"], outputs[CALIBRATION], class_names, score.max_auto_error,
        1 - score.guarantee_confidence, score.guarantee,
    )  # fmt: skip
    with staged_dir(out.trust) as staging:
        trust.save(staging)
    for split in EVALUATED_SPLITS:
        metrics[split] |= auto_label_figures(trust, outputs[split], class_names, score.ood_false_rejection)
    write_json(out.metrics, metrics)
    test = outputs["test"]
    _write_plots(out.plots, test.labels, test.probabilities, uncalibrated["test"], class_names,
                 cfg.calibration_bins, out.history)  # fmt: skip
    _log_to_run(training["run_id"], metrics, out.metrics, out.plots)
    return EvaluationResult(out.metrics, out.plots, metrics, out.trust, trust.guarantee.describe())


def without_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """The probabilities before temperature scaling, from the calibrated ones: softmax(T log p)
    is softmax(logits), since log p is logits / T less a constant per row."""
    from scipy.special import softmax

    return softmax(temperature * np.log(np.maximum(probabilities, np.finfo(np.float32).tiny)), axis=1)


def auto_label_figures(trust: Trust, outputs: ModelOutputs, class_names: list[str], epsilon: float) -> dict:
    """What scoring would do with these labelled images: the share auto-labelled, the error among
    those labels (None without any), and the share the out-of-distribution gate rejects."""
    rejected = trust.gate.p_values(trust.gate.scores(outputs.features)) <= epsilon
    auto = (outputs.confidences >= trust.cutoffs(outputs.predicted, class_names)) & ~rejected
    wrong = outputs.predicted != outputs.labels
    count = max(len(outputs.labels), 1)
    return {
        "auto_share": float(auto.sum() / count),
        "auto_error": float(wrong[auto].mean()) if auto.any() else None,
        "out_of_distribution_share": float(rejected.sum() / count),
    }


def classification_metrics(y: np.ndarray, probabilities: np.ndarray, class_names: list[str], bins: int) -> dict:
    """AUC, ACC (MedMNIST definitions), balanced accuracy, ECE and per-class figures."""
    from sklearn.metrics import confusion_matrix, roc_auc_score

    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(y, predicted, labels=range(len(class_names)))
    per_class = {}
    for index, name in enumerate(class_names):
        positives = y == index
        true_positive = matrix[index, index]
        false_positive = matrix[:, index].sum() - true_positive
        negatives = (~positives).sum()
        per_class[name] = {
            "auc": float(roc_auc_score(positives, probabilities[:, index])) if 0 < positives.sum() < len(y) else None,
            "sensitivity": float(true_positive / positives.sum()) if positives.any() else None,
            "specificity": float((negatives - false_positive) / negatives) if negatives else None,
            "support": int(positives.sum()),
        }
    sensitivities = [c["sensitivity"] for c in per_class.values() if c["sensitivity"] is not None]
    aucs = [c["auc"] for c in per_class.values() if c["auc"] is not None]
    return {
        "auc": float(np.mean(aucs)) if aucs else None,
        "acc": float((predicted == y).mean()),
        "balanced_accuracy": float(np.mean(sensitivities)),
        "ece": expected_calibration_error(y, probabilities, bins),
        "n": len(y),
        "per_class": per_class,
    }


def flat_metrics(metrics: dict) -> dict[str, float]:
    """`{"test": {"auc": .9}}` -> `{"test_auc": .9}`, per-class ones as `test_sensitivity_<class>`."""
    flat = {}
    for split, values in metrics.items():
        for key, value in values.items():
            if key == "per_class":
                for name, figures in value.items():
                    safe = re.sub(r"[^\w\-. /]", "_", name)  # characters MLflow accepts in keys
                    flat.update(
                        {f"{split}_{k}_{safe}": v for k, v in figures.items() if k != "support" and v is not None}
                    )
            elif value is not None:
                flat[f"{split}_{key}"] = value
    return flat


def _write_plots(
    plots_dir: Path,
    y: np.ndarray,
    probabilities: np.ndarray,
    uncalibrated: np.ndarray,
    class_names: list[str],
    bins: int,
    history_path: Path,
) -> None:
    plots_dir.mkdir(parents=True, exist_ok=True)
    plots = Plots(plots_dir)
    names = np.array(class_names)
    # For `dvc plots`: one row per test image, rendered by DVC's confusion template.
    write_table(plots.confusion_table, pd.DataFrame({"actual": names[y], "predicted": names[probabilities.argmax(1)]}))
    save_confusion_matrix(plots.confusion_matrix, y, probabilities.argmax(1), class_names)
    save_roc_curves(plots.roc_curves, y, probabilities, class_names)
    curves = {"temperature-scaled": probabilities, "before scaling": uncalibrated}
    save_reliability_diagram(plots.reliability, y, curves, bins)
    if history_path.exists():
        save_training_curves(plots.training_curves, pd.read_csv(history_path))


def _log_to_run(run_id: str, metrics: dict, metrics_path: Path, plots_dir: Path) -> None:
    import mlflow

    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics(flat_metrics(metrics))
        mlflow.log_artifact(str(metrics_path))
        mlflow.log_artifacts(str(plots_dir), artifact_path="plots")
