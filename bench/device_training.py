"""Training on whatever device Keras sees, with no MLflow, DVC or TensorFlow needed (issue 14,
item 6: a GPU machine with JAX or torch and no TensorFlow): images/s per epoch, the validation
figures per epoch, how long validation accuracy took to first reach a target (the CPU run's), and
the test figures, read once at the end.

The data is a MedMNIST `.npz` with its official splits, each image prepared as the preprocess
stage prepares it (`prepare_image`, the preset's or the defaults' settings); the network, recipe,
input (augmentation inside the compiled step under JAX and torch), schedule, averaged weights and
mixed precision on a GPU are the train stage's (`compiled_model`, `configure_accelerator`). Not
the stage itself: the epochs are fixed (no probe, plan or budget), so that the device's run is the
CPU run's recipe, step for step.

    KERAS_BACKEND=jax python bench/device_training.py ../shared/data/bloodmnist.npz --preset bloodmnist
        --size 28 --widths 32-64-128 --epochs 30 [--target-accuracy 0.9492] [--limit N] [--out result.json]

Where TensorFlow, Keras or pydantic are missing (a GPU machine's image), carry wheels of keras,
namex, optree, pydantic, pydantic-core, annotated-types and typing-inspection (BENCHMARKS.md,
"On a GPU", gives the commands).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # medcls from this checkout, installed or not


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("npz", type=Path, help="a MedMNIST .npz (train/val/test images and labels)")
    parser.add_argument("--preset", help="presets/<name>.yaml's recipe; the defaults without it")
    parser.add_argument("--size", type=int, required=True, help="input px per side")
    parser.add_argument("--widths", default="32-64-128")
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--batch-size", type=int, help="the recipe's without it")
    parser.add_argument("--target-accuracy", type=float, help="report when validation accuracy first reaches it")
    parser.add_argument("--limit", type=int, help="at most this many images of each split (a quick check)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, help="also write the result here, as JSON")
    args = parser.parse_args()
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as medcls.runtime sets it, before Keras loads
    result = train_on_device(args)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


def train_on_device(args: argparse.Namespace) -> dict:
    import keras

    from medcls.config import Params
    from medcls.model.evaluate import classification_metrics
    from medcls.model.inputs import classifier_of, evaluation_dataset, training_dataset
    from medcls.model.train import compiled_model, training_schedule
    from medcls.presets import preset_params
    from medcls.runtime import configure_accelerator

    params = Params.model_validate(preset_params(REPO / "presets" / f"{args.preset}.yaml")) if args.preset else Params()
    widths = [int(width) for width in args.widths.split("-")]
    update = {"epochs": args.epochs, "widths": widths, "stem_stride": 1} | (
        {"batch_size": args.batch_size} if args.batch_size else {}
    )
    cfg = params.train.model_copy(update=update)
    splits = prepared_splits(args.npz, params.preprocess.model_copy(update={"image_size": args.size}), args.limit)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = splits["train"], splits["val"], splits["test"]
    n_classes = int(max(y.max() for _, y in splits.values())) + 1
    accelerator = configure_accelerator(args.seed)
    steps_per_epoch = -(-len(x_train) // cfg.batch_size)
    with accelerator.scope():
        schedule = training_schedule(cfg, steps_per_epoch)
        model = compiled_model(cfg, x_train, n_classes, steps_per_epoch, seed=args.seed, schedule=schedule)
    clock = EpochClock(args.target_accuracy)
    averaged = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if cfg.average_weights else []
    model.fit(
        training_dataset(x_train, y_train, n_classes, cfg, args.seed),
        validation_data=evaluation_dataset(x_val, y_val, n_classes, cfg.batch_size),
        epochs=cfg.epochs,
        shuffle=False,
        callbacks=[*averaged, clock],  # the clock last: it reads the averaged weights' validation
        verbose=2,
    )
    classifier = classifier_of(model)
    probabilities = classifier.predict(x_test.astype(np.float32), verbose=0)
    test = classification_metrics(y_test, probabilities, [str(index) for index in range(n_classes)], bins=15)
    return {
        "device": accelerator.device,
        "precision": accelerator.precision,
        "backend": keras.config.backend(),
        "data": str(args.npz),
        "images": {split: len(x) for split, (x, _) in splits.items()},
        "recipe": {
            "preset": args.preset,
            "size": args.size,
            "widths": widths,
            "epochs": cfg.epochs,
            "batch_size": cfg.batch_size,
        },
        "epoch_seconds": clock.seconds,
        # The first epoch compiles the step: the rate is the later epochs'.
        "train_images_per_second": len(x_train) * (len(clock.seconds) - 1) / sum(clock.seconds[1:])
        if len(clock.seconds) > 1
        else None,
        "val_accuracy": clock.accuracies,
        "val_auc": clock.aucs,
        "target_accuracy": args.target_accuracy,
        "seconds_to_target": clock.seconds_to_target,
        "test_auc": test["auc"],
        "test_acc": test["acc"],
    }


def prepared_splits(npz: Path, preprocess, limit: int | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """train/val/test of a MedMNIST .npz, each image prepared as the preprocess stage would."""
    from medcls.data.preprocess import prepare_image

    channels = preprocess.channels
    with np.load(npz) as data:
        splits = {split: (data[f"{split}_images"][:limit], data[f"{split}_labels"].reshape(-1)[:limit])
                  for split in ("train", "val", "test")}  # fmt: skip
    if channels == "auto":
        channels = 3 if splits["train"][0].ndim == 4 else 1
    preprocess = preprocess.model_copy(update={"channels": channels})
    return {
        split: (np.stack([prepare_image(image, preprocess) for image in images]), labels.astype(np.int64))
        for split, (images, labels) in splits.items()
    }


class EpochClock:
    """Each epoch's seconds and validation figures, and the seconds of training (from the first
    epoch's start) until validation accuracy first reached `target`."""

    def __new__(cls, target: float | None):
        import keras

        class Clock(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.seconds: list[float] = []
                self.accuracies: list[float] = []
                self.aucs: list[float] = []
                self.seconds_to_target: float | None = None

            def on_train_begin(self, logs: dict | None = None) -> None:
                self.started = time.perf_counter()

            def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
                self.epoch_started = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                now, logs = time.perf_counter(), logs or {}
                self.seconds.append(now - self.epoch_started)
                self.accuracies.append(float(logs["val_accuracy"]))
                self.aucs.append(float(logs["val_auc"]))
                reached = target is not None and self.accuracies[-1] >= target
                if reached and self.seconds_to_target is None:
                    self.seconds_to_target = now - self.started

        return Clock()


if __name__ == "__main__":
    main()
