"""Train stage: fit the classifier on `data/processed/`, tracked as one MLflow run.

Writes `models/model.keras` and `models/training.json` (run id, logged model URI, timings) and
the per-epoch history (a DVC plot). The run holds every param, the per-epoch curves, the data
version and the model with its signature and input contract.
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medcls.catalog import ModelFiles
from medcls.config import TrainConfig
from medcls.data.preprocess import load_contract, load_split
from medcls.model.calibration import fit_temperature, predict_logits
from medcls.model.inputs import evaluation_dataset, training_dataset
from medcls.model.network import (
    batchnorm_momentum,
    build_classifier,
    forward_flops,
    resolve_stem_stride,
    set_batchnorm_momentum,
    with_temperature,
)
from medcls.runtime import configure_accelerator
from medcls.support.files import staged_dir, write_json, write_table
from medcls.support.tracking import ensure_experiment
from medcls.support.versioning import data_version

LOGGED_MODEL_NAME = "model"  # the model's name inside its MLflow run
RAW_DATA = "data/raw"  # the data version a run is tagged with (`data_version`), as in dvc.lock


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
    data_versions: dict[str, str]  # DVC hash of each data folder it was trained from (data/raw, data/processed)


def train_model(
    cfg: TrainConfig,
    processed_dir: Path,
    model_dir: Path,
    history_path: Path,
    *,
    seed: int,
    run_params: dict[str, object],
    data_versions: dict[str, Path],
) -> TrainResult:
    """Train, log the run and the model to MLflow, save the model; `run_params` are logged as is.
    `data_versions` names the data folders it comes from: each becomes a dataset input of the run
    whose digest is the folder's DVC hash, as dvc.lock records it."""
    import mlflow

    accelerator = configure_accelerator(seed)
    contract = load_contract(processed_dir)
    x_train, y_train, _ = load_split(processed_dir, "train")
    if cfg.stem_stride == "auto":
        cfg = resolve_stem_stride(cfg, x_train.shape[1])
        logging.getLogger(__name__).info("train.stem_stride auto: %d (%d px inputs)", cfg.stem_stride, x_train.shape[1])
    x_val, y_val, _ = load_split(processed_dir, "val")
    n_classes = len(contract["class_names"])
    with accelerator.scope():
        model = compiled_model(cfg, x_train, n_classes, steps_per_epoch=-(-len(x_train) // cfg.batch_size))
    mlflow.set_experiment(experiment_id=ensure_experiment(cfg.experiment))
    with mlflow.start_run(run_name=run_name(cfg, contract, run_params)) as run:
        # What `auto` settings became, beside the params as written.
        mlflow.log_params(run_params | {"resolved.preprocess.image_size": contract["preprocess"]["image_size"],
                                        "resolved.train.stem_stride": cfg.stem_stride})  # fmt: skip
        hashes = _log_data_versions(data_versions)
        mlflow.set_tags(
            {"data_version": hashes[RAW_DATA], "device": accelerator.device, "precision": accelerator.precision}
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
        model_uri = _log_model(model, x_val[:2], {**contract, "temperature": temperature, "data_versions": hashes})
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
        hashes,
    )
    with staged_dir(model_dir) as staging:
        model.save(ModelFiles(staging).model)
        write_json(ModelFiles(staging).training, {**asdict(result), "model_dir": str(model_dir), **contract})
    write_table(history_path, pd.DataFrame(history).rename_axis("epoch").reset_index())
    return result


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
        validation_data=evaluation_dataset(*val, n_classes, cfg.batch_size),
        epochs=cfg.epochs,
        shuffle=False,  # the dataset reshuffles every epoch itself
        callbacks=[stopper, EpochCurves()],
        verbose=2,
    )
    values = {key: [float(v) for v in series] for key, series in history.history.items()}
    return values, int(np.argmax(values["val_auc"]))


def _log_data_versions(folders: dict[str, Path]) -> dict[str, str]:
    """Each data folder as a dataset input of the run (the UI's Datasets column), its digest the
    folder's DVC hash; returns {name: hash}."""
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    hashes = {name: data_version(folder) for name, folder in folders.items()}
    for name, folder in folders.items():
        with warnings.catch_warnings():  # MLflow 3.17 registers its local-file source twice and says so
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(folder.resolve().as_uri())
        mlflow.log_input(MetaDataset(source, name=name, digest=hashes[name]), context="training")
    return hashes


def _log_model(model, example: np.ndarray, contract: dict) -> str:
    """Log the Keras model with its signature and input contract; returns its `models:/` URI."""
    import mlflow
    from mlflow.models import infer_signature

    example = example.astype(np.float32)
    signature = infer_signature(example, model.predict(example, verbose=0))
    info = mlflow.keras.log_model(
        model,
        name=LOGGED_MODEL_NAME,
        signature=signature,
        metadata={**contract, "input": "float32 0-255, N x S x S x C"},
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
