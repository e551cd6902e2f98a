"""Process set-up, done once at each entry point (CLI command, Prefect flow), never at import."""

from __future__ import annotations

import logging
import os
import random
import tempfile
from pathlib import Path

import numpy as np

# Quiet, offline-friendly defaults; a user's own environment variables win.
QUIET_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "GX_ANALYTICS_ENABLED": "False",
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "OPENCV_LOG_LEVEL": "ERROR",  # a corrupt file is quarantined with its reason; no decoder chatter
}  # Prefect's settings are in pyproject.toml: Prefect reads them when imported, before this runs.


def setup_runtime(root: Path, seed: int) -> None:
    """Environment defaults, logging, MLflow's tracking store under `root/mlruns`, seeds."""
    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("MLFLOW_TRACKING_URI", local_tracking_uri(root))
    # Our own progress at INFO; the libraries' chatter only from WARNING up.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("medcls").setLevel(logging.INFO)
    random.seed(seed)
    np.random.seed(seed)


def local_tracking_uri(root: Path) -> str:
    """`sqlite:///<root>/mlruns/mlflow.db`, absolute so any working directory finds it."""
    (root / "mlruns").mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(root / 'mlruns' / 'mlflow.db').resolve()}"


def configure_accelerator(seed: int) -> str:
    """Seed Keras and, when a GPU is visible, use it with mixed precision. Returns the device."""
    import keras

    keras.utils.set_random_seed(seed)
    gpus = _visible_gpus(keras.config.backend())
    if not gpus:
        return "CPU"
    keras.mixed_precision.set_global_policy("mixed_float16")
    return f"GPU x{len(gpus)}: {gpus[0]}"


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


def data_version(path: Path) -> str:
    """DVC's content hash of a file or folder (`<md5>.dir` for folders), as `dvc.lock` records it."""
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    filesystem = LocalFileSystem()
    with tempfile.TemporaryDirectory() as scratch:
        _, _, tree = build(HashFileDB(filesystem, scratch), str(path), filesystem, "md5", dry_run=True)
    return tree.hash_info.value
