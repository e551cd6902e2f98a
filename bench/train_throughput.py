"""Training input pipeline against the ceiling: images/s of training epochs fed by medcls's
`tf.data` pipeline (shuffle, class weights, augmentation, prefetch) and of `model.fit` on the same
arrays already in memory with nothing else to do, side by side in one run, plus the achieved
GFLOP/s of the training step against this CPU's peak.

Pixel values do not change the cost of a step, so the arrays are random images of the preset's
input shape; the network and recipe are the preset's.

`--xla` compares instead the same pipeline with and without XLA (`jit_compile`, which Keras
turns on only where a GPU is) on this CPU. `--onednn` compares TensorFlow's oneDNN kernels off and
on (`TF_ENABLE_ONEDNN_OPTS`, read once at import, so each measurement is a process of its own;
TensorFlow turns them on by itself only on CPUs with AVX-512), for training and for the forward
pass that scoring runs. `--backend` compares Keras's TensorFlow backend (tf.data input, oneDNN on)
with its JAX backend (XLA, the Keras PyDataset input medcls uses where TensorFlow may be absent),
each measurement a process of its own too; JAX must be importable (e.g. on PYTHONPATH).

    .venv/bin/python bench/train_throughput.py [--preset bloodmnist] [--size 28] [--widths 32-64-128]
        [--images 4096] [--repeats 3] [--xla | --onednn | --backend]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ONEDNN = "TF_ENABLE_ONEDNN_OPTS"
# Settings read once, at import: each measurement of one is a process of its own.
PROCESS_COMPARISONS = {
    "onednn": {"oneDNN off": {ONEDNN: "0"}, "oneDNN on": {ONEDNN: "1"}},
    "backend": {"TensorFlow": {"KERAS_BACKEND": "tensorflow", ONEDNN: "1"}, "JAX": {"KERAS_BACKEND": "jax"}},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="bloodmnist")
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, help="input px per side (required where the preset's is auto)")
    parser.add_argument("--widths", default="32-64-128", help="the network where the preset's is auto")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--xla", action="store_true", help="the pipeline with XLA against without")
    modes.add_argument("--onednn", action="store_true", help="oneDNN kernels on against off (child processes)")
    modes.add_argument("--backend", action="store_true", help="TensorFlow's backend against JAX's (child processes)")
    modes.add_argument("--one-measurement", action="store_true", help=argparse.SUPPRESS)  # a child of those two
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.onednn or args.backend:
        compare_in_processes(args, PROCESS_COMPARISONS["onednn" if args.onednn else "backend"])
        return
    setup = Setup(args, parser)
    if args.one_measurement:
        print(json.dumps(setup.measure_once()))
        return
    runs = setup.runs(args.xla)
    for run in runs.values():  # build and trace the step functions outside the timing
        run()
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):  # alternate, so drifts of a noisy machine hit both alike
        for name, run in runs.items():
            rates[name].append(setup.rate(run))
    print(setup.heading())
    report(rates, setup.step_flops)


class Setup:
    """The preset's network and recipe, compiled, on random images of its input shape."""

    def __init__(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
        import keras

        from medcls.config import Params
        from medcls.model.inputs import classifier_of, training_dataset
        from medcls.model.network import forward_flops, resolve_stem_stride
        from medcls.model.train import compiled_model
        from medcls.presets import preset_params

        params = Params.model_validate(preset_params(REPO / "presets" / f"{args.preset}.yaml"))
        size, channels = args.size or params.preprocess.image_size, params.preprocess.channels
        if "auto" in (size, channels):
            parser.error(f"preset {args.preset}: give --size, and set preprocess.channels (1 or 3)")
        # What `auto` training settings usually become on two CPU cores (medcls.model.plan); the
        # schedule's length does not change a step's cost.
        cfg = resolve_stem_stride(params.train, size).model_copy(update={"epochs": args.epochs})
        if cfg.widths == "auto":
            cfg = cfg.model_copy(update={"widths": [int(width) for width in args.widths.split("-")]})
        n_classes = len(params.data.class_names or [0, 1])
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (args.images, size, size, channels), dtype=np.uint8)
        y = rng.integers(0, n_classes, args.images).astype(np.int32)
        steps = -(-args.images // cfg.batch_size)
        keras.utils.set_random_seed(0)
        self.args, self.cfg, self.shape = args, cfg, x.shape[1:]
        self.pipeline_model = compiled_model(cfg, x, n_classes, steps, seed=0)
        self.other_model = compiled_model(cfg, x, n_classes, steps, seed=0)
        self.dataset = training_dataset(x, y, n_classes, cfg, seed=0)
        self.x_float, self.y_onehot = x.astype(np.float32), np.eye(n_classes, dtype=np.float32)[y]
        self.step_flops = 3 * forward_flops(classifier_of(self.pipeline_model))

    def through_pipeline(self) -> None:
        self.pipeline_model.fit(self.dataset, epochs=self.args.epochs, shuffle=False, verbose=0)

    def in_memory(self) -> None:
        self.other_model.fit(self.x_float, self.y_onehot, batch_size=self.cfg.batch_size, epochs=self.args.epochs,
                             verbose=0)  # fmt: skip

    def with_xla(self) -> None:
        self.other_model.fit(self.dataset, epochs=self.args.epochs, shuffle=False, verbose=0)

    def predict(self) -> None:
        """Scoring's forward pass (`score.batch_size` 64), `epochs` times over the images."""
        for _ in range(self.args.epochs):
            self.pipeline_model.predict(self.x_float, batch_size=64, verbose=0)

    def runs(self, xla: bool) -> dict:
        if xla:
            self.other_model.jit_compile = True
            return {"medcls tf.data pipeline": self.through_pipeline, "the same with XLA": self.with_xla}
        return {"medcls tf.data pipeline": self.through_pipeline, "model.fit on in-memory arrays": self.in_memory}

    def rate(self, run) -> float:
        started = time.perf_counter()
        run()
        return self.args.images * self.args.epochs / (time.perf_counter() - started)

    def measure_once(self) -> dict[str, float]:
        """Training and forward-pass images/s in this process, after a traced warm-up of each.
        Training's epochs are timed inside one `fit` after its first: under JAX, Keras 3.15 fails
        a second `fit` of a model whose optimizer averages the weights (a donated buffer)."""
        import keras

        epoch_ends: list[float] = []
        clock = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: epoch_ends.append(time.perf_counter()))
        self.pipeline_model.fit(self.dataset, epochs=1 + self.args.epochs, shuffle=False, verbose=0, callbacks=[clock])
        training = self.args.images * self.args.epochs / (epoch_ends[-1] - epoch_ends[0])
        self.predict()
        return {"training": training, "forward pass": self.rate(self.predict),
                "step_flops": self.step_flops, "heading": self.heading()}  # fmt: skip

    def heading(self) -> str:
        size, _, channels = self.shape
        widths = "-".join(str(width) for width in self.cfg.widths)
        return (
            f"preset {self.args.preset}: {size}x{size}x{channels}, widths {widths}, batch {self.cfg.batch_size}, "
            f"{self.args.images} images, {self.args.epochs} epochs x {self.args.repeats} alternating repeats, "
            f"{os.cpu_count()} CPUs"
        )


def compare_in_processes(args: argparse.Namespace, settings: dict[str, dict[str, str]]) -> None:
    """Each measurement a fresh process with the first setting's environment, then the second's,
    alternating."""
    child = [sys.executable, __file__, "--one-measurement", "--preset", args.preset, "--widths", args.widths]
    child += ["--images", str(args.images), "--epochs", str(args.epochs), "--repeats", str(args.repeats)]
    child += ["--size", str(args.size)] if args.size else []
    rates: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for name, environment in settings.items():
            done = subprocess.run(child, env=os.environ | environment, capture_output=True, text=True, check=True)
            measured = json.loads(done.stdout.strip().splitlines()[-1])
            for kind in ("training", "forward pass"):
                rates.setdefault(f"{kind}, {name}", []).append(measured[kind])
    print(measured["heading"])
    for kind in ("training", "forward pass"):
        report({name: values for name, values in rates.items() if name.startswith(kind)},
               measured["step_flops"] if kind == "training" else measured["step_flops"] / 3)  # fmt: skip


def report(rates: dict[str, list[float]], flops_per_image: float) -> None:
    """Median images/s of each way (its runs beside it), the ratio of the two, and the first's
    achieved GFLOP/s against this CPU's peak."""
    medians = {name: statistics.median(values) for name, values in rates.items()}
    first, second = medians.values()
    peak = cpu_peak_gflops()
    for name, rate in medians.items():
        spread = ", ".join(f"{value:.1f}" for value in rates[name])
        achieved = rate * flops_per_image / 1e9
        print(f"  {name:32s} {rate:7.0f} images/s (runs: {spread}); {achieved:.1f} GFLOP/s ({achieved / peak:.0%})")
    print(f"  ratio first / second              {first / second:.3f}  ({flops_per_image / 1e6:.1f} MFLOP per image)")


def cpu_peak_gflops() -> float:
    """Cores x clock x 32 float32 FLOP per cycle (two 256-bit FMA units: AVX2, as on this EPYC)."""
    text = Path("/proc/cpuinfo").read_text()
    mhz = [float(line.split(":")[1]) for line in text.splitlines() if line.startswith("cpu MHz")]
    if not mhz:
        mhz = [float(line.split(":")[1]) / 2 for line in text.splitlines() if line.startswith("bogomips")]
    return os.cpu_count() * statistics.mean(mhz) / 1000 * 32


if __name__ == "__main__":
    main()
