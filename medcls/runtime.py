"""Process set-up, done once at each entry point (CLI command, Prefect flow), never at import."""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medcls.catalog import ProjectPaths

# Quiet, offline-friendly, fast defaults; a user's own environment variables win.
RUNTIME_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    # TensorFlow's oneDNN kernels, which it turns on by itself only on CPUs with AVX-512: on AVX2
    # CPUs its own convolutions train 1.2-1.5x slower (BENCHMARKS.md). Read once, when TensorFlow
    # is imported: this must run first.
    "TF_ENABLE_ONEDNN_OPTS": "1",
    "GX_ANALYTICS_ENABLED": "False",
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # each scoring run downloads its model's trust
    "OPENCV_LOG_LEVEL": "ERROR",  # a corrupt file is quarantined with its reason; no decoder chatter
}  # Prefect's settings are in pyproject.toml: Prefect reads them when imported, before this runs.


def setup_runtime(root: Path, seed: int) -> None:
    """Environment defaults, logging, MLflow's tracking store under `root/mlruns`, seeds."""
    for key, value in RUNTIME_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("MLFLOW_TRACKING_URI", local_tracking_uri(root))
    # Our own progress at INFO; the libraries' chatter only from WARNING up.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("medcls").setLevel(logging.INFO)
    random.seed(seed)
    np.random.seed(seed)


def local_tracking_uri(root: Path) -> str:
    """`sqlite:///<root>/mlruns/mlflow.db`, absolute so any working directory finds it."""
    store = ProjectPaths.under(root).mlruns
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(store / 'mlflow.db').resolve()}"


@dataclass(frozen=True)
class Accelerator:
    """Where training runs: the device description (an MLflow tag), the mixed-precision policy and
    the distribution strategy's scope to build the model in."""

    device: str
    precision: str
    scope: Callable[[], contextlib.AbstractContextManager]


def configure_accelerator(seed: int) -> Accelerator:
    """Seed Keras; when GPUs are visible, use all of them with mixed precision (bfloat16 where the
    GPU has it, else float16 with loss scaling). On the CPU nothing changes: float32, no strategy."""
    import keras

    keras.utils.set_random_seed(seed)
    backend = keras.config.backend()
    gpus = _visible_gpus(backend)
    if not gpus:
        return Accelerator("CPU", "float32", contextlib.nullcontext)
    policy = "mixed_bfloat16" if _gpu_has_bfloat16(backend) else "mixed_float16"
    keras.mixed_precision.set_global_policy(policy)
    scope = contextlib.nullcontext
    if backend == "tensorflow":
        import tensorflow as tf

        scope = tf.distribute.MirroredStrategy().scope  # replicas over all visible GPUs
    return Accelerator(f"GPU x{len(gpus)}: {gpus[0]}", policy, scope)


def _gpu_has_bfloat16(backend: str) -> bool:
    """Fast bfloat16 arithmetic needs compute capability 8.0 (Ampere) or newer."""
    if backend == "tensorflow":
        import tensorflow as tf

        details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
        return details.get("compute_capability", (0, 0)) >= (8, 0)
    if backend == "torch":
        import torch

        return torch.cuda.is_bf16_supported()
    return backend == "jax"


def _visible_gpus(backend: str) -> list[str]:
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        for gpu in gpus:  # take memory as needed instead of all of it at start
            tf.config.experimental.set_memory_growth(gpu, True)
        return [gpu.name for gpu in gpus]
    if backend == "torch":
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    if backend == "jax":
        import jax

        return [str(device) for device in jax.devices() if device.platform == "gpu"]
    return []
