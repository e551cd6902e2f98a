"""Train stage: fit the classifier on `data/processed/`, tracked as one MLflow run.

Writes `models/model.keras` and `models/training.json` (run id, logged model URI, timings) and
the per-epoch history (a DVC plot). The run holds every param, the per-epoch curves, the data
version and the model with its signature and input contract.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import subprocess
import time
import warnings
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from medcls.catalog import ModelFiles
from medcls.config import TrainConfig, flatten
from medcls.data.preprocess import load_contract, load_split
from medcls.model.calibration import fit_temperature, per_image_nll, predict_logits
from medcls.model.inputs import (
    classifier_of,
    evaluation_dataset,
    training_dataset,
    training_model,
)
from medcls.model.network import (
    build_classifier,
    epoch_average_momentum,
    forward_flops,
    resolve_stem_stride,
    set_batchnorm_momentum,
    with_temperature,
)
from medcls.model.plan import EPOCH_SHARE, TrainingPlan, plan_training, widths_label
from medcls.model.schedule import budgeted_cosine, epochs_that_fit
from medcls.model.search import PLANNED, candidate_names, choose_candidate, search_candidates
from medcls.runtime import configure_accelerator
from medcls.support.files import staged_dir, write_json, write_table
from medcls.support.tracking import ensure_experiment
from medcls.support.versioning import data_version

LOGGED_MODEL_NAME = "model"  # the model's name inside its MLflow run
RAW_DATA = "data/raw"  # the data version a run is tagged with (`data_version`), as in dvc.lock
# Probe steps, not timed: the first trace and compile; while they do, the input pipeline fills its
# prefetch buffer, so the next steps would get augmented batches for free, faster than training.
PROBE_WARMUP_STEPS = 3 + 10
PROBE_STEPS = 10  # timed
# A candidate's validation figures (MLflow metric -> Keras history key) at its best epoch.
VALIDATION_FIGURES = {"val_loss": "loss", "val_auc": "auc", "val_acc": "accuracy"}


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
    resolved: dict[str, object]  # what the `auto` training settings became


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

    budget = Budget(cfg.time_budget_minutes * 60)
    accelerator = configure_accelerator(seed)
    contract = load_contract(processed_dir)
    data = TrainingData(*load_split(processed_dir, "train")[:2], *load_split(processed_dir, "val")[:2],
                        n_classes=len(contract["class_names"]))  # fmt: skip
    mlflow.set_experiment(experiment_id=ensure_experiment(cfg.experiment))
    with mlflow.start_run() as run:
        mlflow.log_params(run_params | {"resolved.preprocess.image_size": contract["preprocess"]["image_size"]})
        hashes = _log_data_versions(data_versions)
        mlflow.set_tags(
            {"data_version": hashes[RAW_DATA], "device": accelerator.device, "precision": accelerator.precision}
            | _code_version()
        )
        train = _search if cfg.search else _fit
        fitted = train(cfg, data, seed, accelerator, budget)
        # What `auto` settings (and the search) became, beside the params as written.
        resolved = fitted.resolved(cfg.search)
        mlflow.log_params(resolved)
        mlflow.set_tag("mlflow.runName", run_name(fitted.plan.cfg, contract, run_params))
        epochs_run = len(fitted.history["loss"])
        throughput = len(data.x_train) * epochs_run / fitted.seconds
        temperature = fit_temperature(predict_logits(fitted.model, data.x_val), data.y_val)
        model = with_temperature(fitted.model, temperature)
        mlflow.log_metrics(
            {
                "train_seconds": fitted.seconds,
                "train_images_per_second": throughput,
                "best_epoch": fitted.best_epoch,
                "temperature": temperature,
                "forward_mflops_per_image": forward_flops(model) / 1e6,
            }
        )
        model_uri = _log_model(model, data.x_val[:2], {**contract, "temperature": temperature, "data_versions": hashes})
    result = TrainResult(
        model_dir,
        run.info.run_id,
        model_uri,
        epochs_run,
        fitted.best_epoch,
        fitted.seconds,
        throughput,
        accelerator.device,
        temperature,
        hashes,
        resolved,
    )
    with staged_dir(model_dir) as staging:
        model.save(ModelFiles(staging).model)
        write_json(ModelFiles(staging).training, {**asdict(result), "model_dir": str(model_dir), **contract})
    write_table(history_path, pd.DataFrame(fitted.history).rename_axis("epoch").reset_index())
    return result


def run_name(cfg: TrainConfig, contract: dict, run_params: dict[str, object]) -> str:
    """Names that tell runs apart in the MLflow compare view: data, input size, network, recipe."""
    source = str(run_params.get("data.source", "data")).split(":")[-1].rstrip("/").split("/")[-1]
    size = contract["preprocess"]["image_size"]
    stem = f"s{cfg.stem_stride}-" if cfg.stem_stride > 1 else ""
    return (
        f"{source}-{size}px-{stem}w{widths_label(cfg.widths)}x{cfg.blocks_per_stage}-{cfg.optimizer}-e{cfg.epochs}"
        f"-lr{cfg.learning_rate:g}-ls{cfg.label_smoothing:g}"
    )


def training_schedule(cfg: TrainConfig, steps_per_epoch: int):
    """The learning rate over `cfg.epochs` epochs: a warm-up, then cosine decay that the budget
    can compress (medcls.model.schedule)."""
    warmup = min(round(cfg.warmup_epochs * steps_per_epoch), steps_per_epoch * cfg.epochs - 1)
    return budgeted_cosine(cfg.learning_rate, warmup, steps_per_epoch * cfg.epochs)


def compiled_model(
    cfg: TrainConfig, x_train: np.ndarray, n_classes: int, steps_per_epoch: int, *, seed: int, schedule=None
):
    """The model `fit` trains (`training_model`: under backends other than TensorFlow's, with the
    augmentation ahead of the classifier; `classifier_of` gives the classifier), compiled."""
    import keras

    sample = x_train[:: max(1, len(x_train) // 2000)].astype(np.float64) / 255.0
    mean, variance = sample.mean(axis=(0, 1, 2)), sample.var(axis=(0, 1, 2))
    network = build_classifier(cfg, x_train.shape[1:], n_classes, mean.tolist(), variance.tolist())
    averaging = epoch_average_momentum(steps_per_epoch)
    set_batchnorm_momentum(network, cfg.batchnorm_momentum or averaging)
    model = training_model(network, cfg, seed)
    schedule = schedule or training_schedule(cfg, steps_per_epoch)
    common = {"weight_decay": cfg.weight_decay, "use_ema": cfg.average_weights, "ema_momentum": averaging}
    if cfg.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, **common)
    else:
        optimizer = keras.optimizers.AdamW(learning_rate=schedule, **common)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
        metrics=[
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.AUC(multi_label=True, num_labels=n_classes, name="auc"),
        ],
    )
    return model


class Budget:
    """The training run's wall-clock budget, counted from its creation."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.perf_counter()

    def seconds_left(self) -> float:
        return self.seconds - (time.perf_counter() - self.started)


def probe_speed(cfg: TrainConfig, *, data: TrainingData, seed: int, accelerator) -> float:
    """Training images/s of `cfg` on this machine: steps of the real input pipeline and network,
    timed from the end of the warm-up steps to the end of the last, inside one `fit` (whose own
    start-up, about a second, is no cost per step)."""
    import keras

    class StepClock(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.ends: list[float] = []

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            keras.ops.convert_to_numpy((logs or {}).get("loss", 0.0))  # waits for the step to finish
            self.ends.append(time.perf_counter())

    size = min(len(data.x_train), PROBE_STEPS * cfg.batch_size)
    x, y = data.x_train[:size], data.y_train[:size]
    with accelerator.scope():
        model = compiled_model(cfg, x, data.n_classes, steps_per_epoch=PROBE_STEPS, seed=seed)
    clock = StepClock()
    batches = training_dataset(x, y, data.n_classes, cfg, seed, batches=PROBE_WARMUP_STEPS + PROBE_STEPS)
    model.fit(batches, epochs=1, shuffle=False, verbose=0, callbacks=[clock])
    batch_sizes = [min(cfg.batch_size, size - start) for start in range(0, size, cfg.batch_size)]
    images = sum(batch_sizes[step % len(batch_sizes)] for step in range(PROBE_WARMUP_STEPS, len(clock.ends)))
    return images / (clock.ends[-1] - clock.ends[PROBE_WARMUP_STEPS - 1])


@dataclass(frozen=True)
class TrainingData:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    n_classes: int


@dataclass(frozen=True)
class Fitted:
    """One trained network, its best epoch's weights restored."""

    plan: TrainingPlan
    model: object  # keras.Model
    history: dict[str, list[float]]
    best_epoch: int
    seconds: float  # epochs only (not the probes)
    candidate: str = PLANNED  # its name in train.search

    def resolved(self, searched: bool) -> dict[str, object]:
        return self.plan.resolved() | ({"resolved.train.search_winner": self.candidate} if searched else {})

    def validation(self) -> dict[str, float]:
        """The best epoch's validation loss (training's, label smoothing included), AUC and accuracy."""
        return {name: self.history[f"val_{key}"][self.best_epoch] for name, key in VALIDATION_FIGURES.items()}


def _search(cfg: TrainConfig, data: TrainingData, seed: int, accelerator, budget: Budget) -> Fitted:
    """Train the planned network, then the search's candidates around it, each a nested run on an
    equal share of what is left of the budget; a candidate wins only where validation shows it
    better than the planned network beyond chance (`search.choose_candidate`)."""
    import mlflow

    def trial(name: str, candidate: TrainConfig, trials_left: int) -> tuple[Fitted, np.ndarray]:
        with mlflow.start_run(run_name=f"search-{name}", nested=True):
            fitted = _fit(candidate, data, seed, accelerator, Budget(budget.seconds_left() / trials_left))
            nll = validation_nll(fitted.model, data)
            mlflow.log_params({"search.candidate": name, **flatten({"train": fitted.plan.cfg.model_dump(mode="json")})})
            mlflow.log_metrics(fitted.validation() | {"val_nll": float(nll.mean()), "train_seconds": fitted.seconds})
        return dataclasses.replace(fitted, candidate=name), nll

    # The planned network's share assumes the most candidates there can be (a strided stem adds one).
    most = len(candidate_names(resolve_stem_stride(cfg, data.x_train.shape[1]).stem_stride))
    planned, planned_nll = trial(PLANNED, cfg, most)
    others = search_candidates(cfg, planned.plan.cfg)
    trials = {PLANNED: (planned, planned_nll)} | {
        name: trial(name, candidate, len(others) - index) for index, (name, candidate) in enumerate(others.items())
    }
    winner, p_values = choose_candidate({name: nll for name, (_, nll) in trials.items()}, cfg.search_significance)
    mlflow.log_metrics(
        {f"search.val_nll.{name}": float(nll.mean()) for name, (_, nll) in trials.items()}
        | {f"search.p_value.{name}": p for name, p in p_values.items()}
    )
    figures = {
        name: f"val nll {nll.mean():.4f}" + (f" (p {p_values[name]:.3g})" if name in p_values else "")
        for name, (_, nll) in trials.items()
    }
    logging.getLogger(__name__).info(
        "train.search: %s wins (a candidate needs p < %g / %d against planned); validation %s",
        winner, cfg.search_significance, len(p_values), figures,
    )  # fmt: skip
    return trials[winner][0]


def validation_nll(model, data: TrainingData) -> np.ndarray:
    """Each validation image's log loss under the model as it would be kept: its temperature
    fitted on the same images, as the stage does after training."""
    logits = predict_logits(model, data.x_val)
    return per_image_nll(logits, data.y_val, fit_temperature(logits, data.y_val))


def _fit(cfg: TrainConfig, data: TrainingData, seed: int, accelerator, budget: Budget) -> Fitted:
    """Plan the `auto` settings in the budget, build, and fit with early stopping on validation
    loss (the best epoch's weights restored: the averaged ones where `average_weights`), stopping
    at the end of the epoch after which another would overrun the budget's share for epochs."""
    import keras
    import mlflow.keras

    plan = plan_training(
        cfg,
        input_size=data.x_train.shape[1],
        n_train=len(data.x_train),
        n_val=len(data.x_val),
        seconds_left=budget.seconds_left,
        probe=partial(probe_speed, data=data, seed=seed, accelerator=accelerator),
    )
    mlflow.log_metrics({f"probe_images_per_second.w{label}": v for label, v in plan.images_per_second.items()})
    cfg = plan.cfg
    configure_accelerator(seed)  # the probes drew random numbers: the model starts as without them
    steps_per_epoch = -(-len(data.x_train) // cfg.batch_size)
    with accelerator.scope():
        schedule = training_schedule(cfg, steps_per_epoch)
        model = compiled_model(cfg, data.x_train, data.n_classes, steps_per_epoch, seed=seed, schedule=schedule)

    class EpochCurves(mlflow.keras.MlflowCallback):
        """Per-epoch metrics as `epoch_<name>`: `val_auc` etc. stay the final evaluation's."""

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            super().on_epoch_end(epoch, {f"epoch_{key}": value for key, value in (logs or {}).items()})

    # No epoch of the schedule's first half is kept or stops training: at the peak learning rate
    # the validation loss is noisy, and an early dip beat the annealed epochs by chance.
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_loss",
        mode="min",
        patience=cfg.early_stopping_patience,
        restore_best_weights=True,
        start_from_epoch=cfg.epochs // 2,
    )
    # First, so that validation and then every later callback at an epoch's end (the early
    # stopper's copy of the best weights among them) see the averaged weights.
    averaged = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if cfg.average_weights else []
    started = time.perf_counter()
    history = model.fit(
        training_dataset(data.x_train, data.y_train, data.n_classes, cfg, seed),
        validation_data=evaluation_dataset(data.x_val, data.y_val, data.n_classes, cfg.batch_size),
        epochs=cfg.epochs,
        shuffle=False,  # the dataset reshuffles every epoch itself
        callbacks=[*averaged, stopper, keep_to_budget(budget, cfg.epochs, steps_per_epoch, schedule), EpochCurves()],
        verbose=2,
    )
    seconds = time.perf_counter() - started
    values = {key: [float(v) for v in series] for key, series in history.history.items()}
    losses = values["val_loss"]
    # Where the budget stopped training before any epoch could be kept, the model is the last one.
    first_kept = min(stopper.start_from_epoch, len(losses) - 1)
    return Fitted(plan, classifier_of(model), values, first_kept + int(np.argmin(losses[first_kept:])), seconds)


def keep_to_budget(budget: Budget, epochs: int, steps_per_epoch: int, schedule):
    """A callback that keeps training to its budget's share for epochs: at each epoch's end from
    the second on, where fewer of the planned epochs fit at the pace so far (the first epoch's
    tracing left out), the rest of the learning-rate decay (`schedule`, the optimizer's, from
    `training_schedule`) is compressed into those that do, and training ends after the last of
    them, annealed; where none fits, it ends now."""
    import keras

    class KeepToBudget(keras.callbacks.Callback):
        def on_train_begin(self, logs: dict | None = None) -> None:
            self.last_epoch, self.epoch_seconds = epochs, []

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch_started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch_seconds.append(time.perf_counter() - self.epoch_started)
            pace = float(np.mean(self.epoch_seconds[1:] or self.epoch_seconds))
            fit = epochs_that_fit(budget.seconds_left() - budget.seconds * (1 - EPOCH_SHARE), pace)
            # The first epoch's pace alone (its tracing included) only ever stops a run out of time.
            if epoch + 1 + fit < self.last_epoch and (fit == 0 or len(self.epoch_seconds) > 1):
                self.last_epoch = epoch + 1 + fit
                step = (epoch + 1) * steps_per_epoch
                if fit:
                    schedule.compress(step, step + fit * steps_per_epoch)
                    # JAX's compiled step holds the schedule's variables as constants of its trace.
                    if keras.config.backend() == "jax":
                        self.model.make_train_function(force=True)
                how = "the learning rate's decay compressed into the epochs left" if fit else "no further epoch fits"
                logging.getLogger(__name__).warning(
                    "train.time_budget_minutes: epochs take %.0f s, more than planned; training ends after epoch "
                    "%d of %d, %s", pace, self.last_epoch, epochs, how,
                )  # fmt: skip
            if epoch + 1 >= self.last_epoch:
                self.model.stop_training = True

    return KeepToBudget()


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
