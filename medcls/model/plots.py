"""Evaluation figures (PNG), for the MLflow run and `dvc plots`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def _figure(width: float = 5.5, height: float = 4.5, columns: int = 1):
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt.subplots(1, columns, figsize=(width, height), dpi=110)


def _save(figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def save_confusion_matrix(path: Path, y: np.ndarray, predicted: np.ndarray, class_names: list[str]) -> Path:
    from sklearn.metrics import ConfusionMatrixDisplay

    figure, axes = _figure(1.5 + 0.7 * len(class_names), 1.2 + 0.6 * len(class_names))
    ConfusionMatrixDisplay.from_predictions(
        y, predicted, labels=range(len(class_names)), display_labels=class_names, ax=axes, colorbar=False
    )
    axes.set_title("Confusion matrix (test)")
    axes.tick_params(axis="x", labelrotation=45)
    return _save(figure, path)


def save_roc_curves(path: Path, y: np.ndarray, probabilities: np.ndarray, class_names: list[str]) -> Path:
    from sklearn.metrics import RocCurveDisplay

    figure, axes = _figure()
    for index, name in enumerate(class_names):
        if 0 < (y == index).sum() < len(y):
            RocCurveDisplay.from_predictions(y == index, probabilities[:, index], name=name, ax=axes)
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.set_title("ROC per class, one vs rest (test)")
    return _save(figure, path)


def save_reliability_diagram(path: Path, y: np.ndarray, curves: dict[str, np.ndarray], bins: int) -> Path:
    """Accuracy against confidence, one curve per set of probabilities (e.g. before and after
    temperature scaling)."""
    from sklearn.calibration import calibration_curve

    figure, axes = _figure()
    for label, probabilities in curves.items():
        correct = probabilities.argmax(axis=1) == y
        if correct.any() and not correct.all():
            accuracy, mean_confidence = calibration_curve(correct, probabilities.max(axis=1), n_bins=bins)
            axes.plot(mean_confidence, accuracy, marker="o", label=label)
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect calibration")
    axes.set(xlabel="confidence (top class)", ylabel="accuracy", title="Reliability (test)")
    axes.legend()
    return _save(figure, path)


def save_training_curves(path: Path, history: pd.DataFrame) -> Path:
    figure, (loss_axes, auc_axes) = _figure(9, 3.8, columns=2)
    for axes, metric in ((loss_axes, "loss"), (auc_axes, "auc")):
        for prefix, label in (("", "train"), ("val_", "validation")):
            if f"{prefix}{metric}" in history:
                axes.plot(history["epoch"] + 1, history[f"{prefix}{metric}"], marker=".", label=label)
        axes.set(xlabel="epoch", title=metric)
        axes.legend()
    return _save(figure, path)
