"""Train stage: fit the classifier on `data/processed/`, tracked as one MLflow run.

Writes `models/model.keras` and `models/training.json` (run id, logged model URI, timings) and
the per-epoch history (a DVC plot). The run holds every param, the per-epoch curves, the data
version and the model with its signature and input contract.
"""

from __future__ import annotations

import platform
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medcls.config import TrainConfig
from medcls.files import read_json, staged_dir, write_json, write_table
from medcls.model import build_classifier
from medcls.preprocess import load_contract, load_split
from medcls.runtime import configure_accelerator
from medcls.tracking import ensure_experiment

MODEL_FILE = "model.keras"
TRAINING_FILE = "training.json"
LOGGED_MODEL_NAME = "model"


@dataclass(frozen=True)
class TrainResult:
    model_dir: Path
    run_id: str
    model_uri: str
    epochs_run: int
    best_epoch: int
    seconds: float
    images_per_second: float
    device: str


def train_model(
    cfg: TrainConfig,
    processed_dir: Path,
    model_dir: Path,
    history_path: Path,
    *,
    seed: int,
    run_params: dict[str, object],
    data_version: str,
) -> TrainResult:
    """Train, log the run and the model to MLflow, save the model; `run_params` are logged as is."""
    import mlflow

    device = configure_accelerator(seed)
    contract = load_contract(processed_dir)
    x_train, y_train, _ = load_split(processed_dir, "train")
    x_val, y_val, _ = load_split(processed_dir, "val")
    n_classes = len(contract["class_names"])
    model = _compiled_model(cfg, x_train, n_classes, steps_per_epoch=-(-len(x_train) // cfg.batch_size))
    mlflow.set_experiment(experiment_id=ensure_experiment(cfg.experiment))
    with mlflow.start_run(run_name=run_name(cfg, contract, run_params)) as run:
        mlflow.log_params(run_params)
        mlflow.set_tags({"data_version": data_version, "device": device, **_code_version()})
        started = time.perf_counter()
        history, best_epoch = _fit(model, cfg, (x_train, y_train), (x_val, y_val), n_classes, seed)
        seconds = time.perf_counter() - started
        epochs_run = len(history["loss"])
        throughput = len(x_train) * epochs_run / seconds
        mlflow.log_metrics({"train_seconds": seconds, "train_images_per_second": throughput, "best_epoch": best_epoch})
        model_uri = _log_model(model, x_val[:2], contract, data_version)
    result = TrainResult(model_dir, run.info.run_id, model_uri, epochs_run, best_epoch, seconds, throughput, device)
    with staged_dir(model_dir) as staging:
        model.save(staging / MODEL_FILE)
        write_json(staging / TRAINING_FILE, {**asdict(result), "model_dir": str(model_dir), **contract})
    write_table(history_path, pd.DataFrame(history).rename_axis("epoch").reset_index())
    return result


def load_training(model_dir: Path) -> dict:
    """What `train_model` recorded: run id, model URI, class names, preprocessing contract."""
    return read_json(model_dir / TRAINING_FILE)


def run_name(cfg: TrainConfig, contract: dict, run_params: dict[str, object]) -> str:
    """Names that tell runs apart in the MLflow compare view: data, input size, network, recipe."""
    source = str(run_params.get("data.source", "data")).split(":")[-1].rstrip("/").split("/")[-1]
    size = contract["preprocess"]["image_size"]
    widths = "-".join(str(width) for width in cfg.widths)
    return f"{source}-{size}px-w{widths}x{cfg.blocks_per_stage}-e{cfg.epochs}-lr{cfg.learning_rate:g}"


def _compiled_model(cfg: TrainConfig, x_train: np.ndarray, n_classes: int, steps_per_epoch: int):
    import keras

    sample = x_train[:: max(1, len(x_train) // 2000)].astype(np.float64) / 255.0
    mean, variance = sample.mean(axis=(0, 1, 2)), sample.var(axis=(0, 1, 2))
    model = build_classifier(cfg, x_train.shape[1:], n_classes, mean.tolist(), variance.tolist())
    warmup = steps_per_epoch  # one epoch of linear warm-up, then cosine decay
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=cfg.learning_rate / 10,
        decay_steps=max(1, steps_per_epoch * cfg.epochs - warmup),
        alpha=0.01,
        warmup_target=cfg.learning_rate,
        warmup_steps=warmup,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=schedule, weight_decay=cfg.weight_decay),
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=[
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.AUC(multi_label=True, num_labels=n_classes, name="auc"),
        ],
    )
    return model


def _fit(model, cfg: TrainConfig, train: tuple, val: tuple, n_classes: int, seed: int) -> tuple[dict, int]:
    """Fit with early stopping on validation AUC; the best epoch's weights are restored."""
    import keras
    import mlflow.keras

    class EpochCurves(mlflow.keras.MlflowCallback):
        """Per-epoch metrics as `epoch_<name>`: `val_auc` etc. stay the final evaluation's."""

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            super().on_epoch_end(epoch, {f"epoch_{key}": value for key, value in (logs or {}).items()})

    stopper = keras.callbacks.EarlyStopping(
        monitor="val_auc", mode="max", patience=cfg.early_stopping_patience, restore_best_weights=True
    )
    history = model.fit(
        _training_dataset(*train, n_classes, cfg, seed),
        validation_data=_evaluation_dataset(*val, n_classes, cfg.batch_size),
        epochs=cfg.epochs,
        shuffle=False,  # the dataset reshuffles every epoch itself
        callbacks=[stopper, EpochCurves()],
        verbose=2,
    )
    values = {key: [float(v) for v in series] for key, series in history.history.items()}
    return values, int(np.argmax(values["val_auc"]))


def _training_dataset(x: np.ndarray, y: np.ndarray, n_classes: int, cfg: TrainConfig, seed: int):
    """Shuffled, class-weighted, augmented batches, prepared in parallel with the training step."""
    import tensorflow as tf

    weights = _sample_weights(y, n_classes) if cfg.class_weights else np.ones(len(y), np.float32)
    augment = _augmentation(cfg, seed)
    dataset = tf.data.Dataset.from_tensor_slices((x, np.eye(n_classes, dtype=np.float32)[y], weights))
    dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(cfg.batch_size)
    dataset = dataset.map(
        lambda images, labels, w: (augment(tf.cast(images, tf.float32), training=True), labels, w),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


def _evaluation_dataset(x: np.ndarray, y: np.ndarray, n_classes: int, batch_size: int):
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((x, np.eye(n_classes, dtype=np.float32)[y]))
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _sample_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Balanced class weights: every class contributes equally to the loss."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    per_class = len(y) / (n_classes * np.maximum(counts, 1))
    return per_class[y].astype(np.float32)


def _augmentation(cfg: TrainConfig, seed: int):
    """Training-only augmentation on 0-255 images (it is not part of the saved model)."""
    import keras
    from keras import layers

    augment = cfg.augment
    steps = [
        layers.RandomRotation(augment.rotation_degrees / 360.0, fill_mode="reflect", seed=seed),
        layers.RandomTranslation(augment.shift_fraction, augment.shift_fraction, fill_mode="reflect", seed=seed + 1),
        layers.RandomContrast(augment.contrast, value_range=(0, 255), seed=seed + 2),
    ]
    if augment.horizontal_flip:
        steps.append(layers.RandomFlip("horizontal", seed=seed + 3))
    return keras.Sequential(steps, name="augmentation")


def _log_model(model, example: np.ndarray, contract: dict, data_version: str) -> str:
    """Log the Keras model with its signature and input contract; returns its `models:/` URI."""
    import mlflow
    from mlflow.models import infer_signature

    example = example.astype(np.float32)
    signature = infer_signature(example, model.predict(example, verbose=0))
    info = mlflow.keras.log_model(
        model,
        name=LOGGED_MODEL_NAME,
        signature=signature,
        metadata={**contract, "data_version": data_version, "input": "float32 0-255, N x S x S x C"},
    )
    return info.model_uri


def _code_version() -> dict[str, str]:
    """The git commit the code ran from (if any) and the machine, as run tags."""
    tags = {"host_platform": platform.platform()}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10)
        tags["git_commit"] = commit.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return tags
