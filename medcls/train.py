"""Train stage: fit the classifier on `data/processed/`, tracked as one MLflow run.

Writes `models/model.keras` and `models/training.json` (run id, logged model URI, timings) and
the per-epoch history (a DVC plot). The run holds every param, the per-epoch curves, the data
version and the model with its signature and input contract.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medcls.config import TrainConfig
from medcls.files import read_json, staged_dir, write_json, write_table
from medcls.model import (
    batchnorm_momentum,
    build_classifier,
    forward_flops,
    logits_model,
    set_batchnorm_momentum,
    with_temperature,
)
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
    temperature: float


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

    accelerator = configure_accelerator(seed)
    contract = load_contract(processed_dir)
    x_train, y_train, _ = load_split(processed_dir, "train")
    x_val, y_val, _ = load_split(processed_dir, "val")
    n_classes = len(contract["class_names"])
    with accelerator.scope():
        model = compiled_model(cfg, x_train, n_classes, steps_per_epoch=-(-len(x_train) // cfg.batch_size))
    mlflow.set_experiment(experiment_id=ensure_experiment(cfg.experiment))
    with mlflow.start_run(run_name=run_name(cfg, contract, run_params)) as run:
        mlflow.log_params(run_params)
        mlflow.set_tags(
            {"data_version": data_version, "device": accelerator.device, "precision": accelerator.precision}
            | _code_version()
        )
        started = time.perf_counter()
        history, best_epoch = _fit(model, cfg, (x_train, y_train), (x_val, y_val), n_classes, seed)
        seconds = time.perf_counter() - started
        epochs_run = len(history["loss"])
        throughput = len(x_train) * epochs_run / seconds
        temperature = fit_temperature(predict_logits(model, x_val), y_val)
        model = with_temperature(model, temperature)
        mlflow.log_metrics(
            {
                "train_seconds": seconds,
                "train_images_per_second": throughput,
                "best_epoch": best_epoch,
                "temperature": temperature,
                "forward_mflops_per_image": forward_flops(model) / 1e6,
            }
        )
        model_uri = _log_model(model, x_val[:2], {**contract, "temperature": temperature}, data_version)
    result = TrainResult(
        model_dir,
        run.info.run_id,
        model_uri,
        epochs_run,
        best_epoch,
        seconds,
        throughput,
        accelerator.device,
        temperature,
    )
    with staged_dir(model_dir) as staging:
        model.save(staging / MODEL_FILE)
        write_json(staging / TRAINING_FILE, {**asdict(result), "model_dir": str(model_dir), **contract})
    write_table(history_path, pd.DataFrame(history).rename_axis("epoch").reset_index())
    return result


def predict_logits(model, x: np.ndarray) -> np.ndarray:
    return logits_model(model).predict(x.astype(np.float32), batch_size=256, verbose=0).astype(np.float64)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature scaling (Guo et al. 2017): the T > 0 minimising the negative log-likelihood of
    softmax(logits / T) on held-out data. It changes confidences, never the predicted class."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    def nll(log_t: float) -> float:
        return -log_softmax(logits / np.exp(log_t), axis=1)[np.arange(len(y)), y].mean()

    return float(np.exp(minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded").x))


def load_training(model_dir: Path) -> dict:
    """What `train_model` recorded: run id, model URI, class names, preprocessing contract."""
    return read_json(model_dir / TRAINING_FILE)


def run_name(cfg: TrainConfig, contract: dict, run_params: dict[str, object]) -> str:
    """Names that tell runs apart in the MLflow compare view: data, input size, network, recipe."""
    source = str(run_params.get("data.source", "data")).split(":")[-1].rstrip("/").split("/")[-1]
    size = contract["preprocess"]["image_size"]
    widths = "-".join(str(width) for width in cfg.widths)
    stem = f"s{cfg.stem_stride}-" if cfg.stem_stride > 1 else ""
    return (
        f"{source}-{size}px-{stem}w{widths}x{cfg.blocks_per_stage}-{cfg.optimizer}-e{cfg.epochs}"
        f"-lr{cfg.learning_rate:g}-ls{cfg.label_smoothing:g}"
    )


def compiled_model(cfg: TrainConfig, x_train: np.ndarray, n_classes: int, steps_per_epoch: int):
    import keras

    sample = x_train[:: max(1, len(x_train) // 2000)].astype(np.float64) / 255.0
    mean, variance = sample.mean(axis=(0, 1, 2)), sample.var(axis=(0, 1, 2))
    model = build_classifier(cfg, x_train.shape[1:], n_classes, mean.tolist(), variance.tolist())
    set_batchnorm_momentum(model, cfg.batchnorm_momentum or batchnorm_momentum(steps_per_epoch))
    warmup = min(round(cfg.warmup_epochs * steps_per_epoch), steps_per_epoch * cfg.epochs - 1)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=cfg.learning_rate / 10 if warmup else cfg.learning_rate,
        decay_steps=max(1, steps_per_epoch * cfg.epochs - warmup),
        alpha=0.01,
        warmup_target=cfg.learning_rate if warmup else None,
        warmup_steps=warmup,
    )
    if cfg.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    else:
        optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=cfg.weight_decay)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
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
        training_dataset(*train, n_classes, cfg, seed),
        validation_data=_evaluation_dataset(*val, n_classes, cfg.batch_size),
        epochs=cfg.epochs,
        shuffle=False,  # the dataset reshuffles every epoch itself
        callbacks=[stopper, EpochCurves()],
        verbose=2,
    )
    values = {key: [float(v) for v in series] for key, series in history.history.items()}
    return values, int(np.argmax(values["val_auc"]))


def training_dataset(x: np.ndarray, y: np.ndarray, n_classes: int, cfg: TrainConfig, seed: int):
    """Shuffled, class-weighted, augmented batches, prepared in parallel with the training step."""
    import tensorflow as tf

    weights = _sample_weights(y, n_classes) if cfg.class_weights else np.ones(len(y), np.float32)
    augment = _augmentation(cfg, seed)
    quarter_turns = cfg.augment.quarter_turns and x.shape[1] == x.shape[2]

    def augmented(images, labels, sample_weights):
        images = tf.cast(images, tf.float32)
        if quarter_turns:
            images = _random_quarter_turns(images)
        return augment(images, training=True), labels, sample_weights

    dataset = tf.data.Dataset.from_tensor_slices((x, np.eye(n_classes, dtype=np.float32)[y], weights))
    dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(cfg.batch_size)
    dataset = dataset.map(augmented, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _random_quarter_turns(images):
    """Each image turned by 0, 90, 180 or 270 degrees: exact (no resampling), for data without an
    orientation such as cells under a microscope."""
    import tensorflow as tf

    turns = tf.random.uniform([tf.shape(images)[0]], 0, 4, dtype=tf.int32)
    candidates = tf.stack([tf.image.rot90(images, k) for k in range(4)], axis=1)  # N x 4 x S x S x C
    return tf.gather(candidates, turns, axis=1, batch_dims=1)


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
    steps = []
    if augment.horizontal_flip or augment.vertical_flip:
        mode = "horizontal_and_vertical" if augment.horizontal_flip and augment.vertical_flip else None
        mode = mode or ("horizontal" if augment.horizontal_flip else "vertical")
        steps.append(layers.RandomFlip(mode, seed=seed + 3))
    if augment.rotation_degrees:
        steps.append(layers.RandomRotation(augment.rotation_degrees / 360.0, fill_mode="reflect", seed=seed))
    if augment.shift_fraction:
        shift = augment.shift_fraction
        steps.append(layers.RandomTranslation(shift, shift, fill_mode="reflect", seed=seed + 1))
    if augment.zoom_fraction:
        steps.append(layers.RandomZoom(augment.zoom_fraction, fill_mode="reflect", seed=seed + 4))
    if augment.brightness:
        steps.append(layers.RandomBrightness(augment.brightness, value_range=(0, 255), seed=seed + 5))
    if augment.contrast:
        steps.append(layers.RandomContrast(augment.contrast, value_range=(0, 255), seed=seed + 2))
    return keras.Sequential(steps or [layers.Identity()], name="augmentation")


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
    tags = {"host_platform": platform.platform(), "cpus": str(os.cpu_count())}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10)
        tags["git_commit"] = commit.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return tags
