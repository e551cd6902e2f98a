"""Training input pipeline against the ceiling: images/s of training epochs fed by medcls's
`tf.data` pipeline (shuffle, class weights, augmentation, prefetch) and of `model.fit` on the same
arrays already in memory with nothing else to do, side by side in one run, plus the achieved
GFLOP/s of the training step against this CPU's peak.

Pixel values do not change the cost of a step, so the arrays are random images of the preset's
input shape; the network and recipe are the preset's.

`--xla` compares instead the same pipeline with and without XLA (`jit_compile`, which Keras
turns on only where a GPU is) on this CPU.

    .venv/bin/python bench/train_throughput.py [--preset bloodmnist] [--images 4096] [--repeats 3] [--xla]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="bloodmnist")
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--xla", action="store_true", help="the pipeline with XLA against without")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from medcls.config import Params
    from medcls.model.inputs import training_dataset
    from medcls.model.network import forward_flops
    from medcls.model.train import compiled_model
    from medcls.presets import preset_params

    params = Params.model_validate(preset_params(REPO / "presets" / f"{args.preset}.yaml"))
    cfg, size = params.train, params.preprocess.image_size
    channels = params.preprocess.channels
    if channels == "auto":
        parser.error(f"preset {args.preset}: set preprocess.channels (1 or 3) to fix the input shape")
    n_classes = len(params.data.class_names or [0, 1])
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.images, size, size, channels), dtype=np.uint8)
    y = rng.integers(0, n_classes, args.images).astype(np.int32)
    steps = -(-args.images // cfg.batch_size)
    keras.utils.set_random_seed(0)
    pipeline_model = compiled_model(cfg, x, n_classes, steps)
    other_model = compiled_model(cfg, x, n_classes, steps)
    dataset = training_dataset(x, y, n_classes, cfg, seed=0)
    x_float, y_onehot = x.astype(np.float32), np.eye(n_classes, dtype=np.float32)[y]

    def through_pipeline() -> None:
        pipeline_model.fit(dataset, epochs=args.epochs, shuffle=False, verbose=0)

    def in_memory() -> None:
        other_model.fit(x_float, y_onehot, batch_size=cfg.batch_size, epochs=args.epochs, verbose=0)

    def with_xla() -> None:
        other_model.fit(dataset, epochs=args.epochs, shuffle=False, verbose=0)

    if args.xla:
        other_model.jit_compile = True
        runs = {"medcls tf.data pipeline": through_pipeline, "the same with XLA": with_xla}
    else:
        runs = {"medcls tf.data pipeline": through_pipeline, "model.fit on in-memory arrays": in_memory}
    for run in runs.values():  # build and trace the step functions outside the timing
        run()
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):  # alternate, so drifts of a noisy machine hit both alike
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            rates[name].append(args.images * args.epochs / (time.perf_counter() - started))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    pipeline_rate, other_rate = medians.values()
    step_flops = 3 * forward_flops(pipeline_model)
    peak = cpu_peak_gflops()
    print(
        f"preset {args.preset}: {size}x{size}x{channels}, batch {cfg.batch_size}, {args.images} images, "
        f"{args.epochs} epochs x {args.repeats} alternating repeats, {os.cpu_count()} CPUs"
    )
    for name, rate in medians.items():
        spread = ", ".join(f"{value:.1f}" for value in rates[name])
        print(f"  {name:32s} {rate:7.0f} images/s (runs: {spread})")
    print(f"  ratio first / second              {pipeline_rate / other_rate:.3f}")
    print(
        f"  training step: {step_flops / 1e6:.1f} MFLOP per image; pipeline {pipeline_rate * step_flops / 1e9:.1f} "
        f"GFLOP/s of a {peak:.0f} GFLOP/s peak ({pipeline_rate * step_flops / 1e9 / peak:.0%})"
    )


def cpu_peak_gflops() -> float:
    """Cores x clock x 32 float32 FLOP per cycle (two 256-bit FMA units: AVX2, as on this EPYC)."""
    text = Path("/proc/cpuinfo").read_text()
    mhz = [float(line.split(":")[1]) for line in text.splitlines() if line.startswith("cpu MHz")]
    if not mhz:
        mhz = [float(line.split(":")[1]) / 2 for line in text.splitlines() if line.startswith("bogomips")]
    return os.cpu_count() * statistics.mean(mhz) / 1000 * 32


if __name__ == "__main__":
    main()
