"""What a scheduled scoring run costs when nothing is new: the run after a full one, over the same
inbox, as a fraction of the full run (5,000 chest X-rays), and over 100,000 small files.

Both are the `medcls score` step (`pipeline.score`) in this process, so process start is not
counted; every run scores into the same output folder, as the schedule does. The model is the
chest X-ray preset's network, untrained (the cost of a no-op run does not depend on the weights),
registered as `production` in a temporary MLflow store.

    .venv/bin/python bench/scoring_noop.py [--images 5000] [--files 100000] [--data ...]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "chest_xray")
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--files", type=int, default=100_000, help="small synthetic files for the large no-op run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="medcls-bench-noop-") as scratch:
        run(args, Path(scratch))


def run(args: argparse.Namespace, scratch: Path) -> None:
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{scratch / 'mlflow.db'}"
    from medcls import pipeline

    project = _project(scratch, pipeline)
    xrays = scratch / "xrays"
    xrays.mkdir()
    for number, file in enumerate(sorted(args.data.rglob("*.jpeg"))[: args.images]):
        os.link(file, xrays / f"{number:05d}-{file.name}")  # links: the inbox costs no disk
    first, first_seconds = _timed(pipeline.score, project, xrays, scratch / "out-xrays")
    noop, noop_seconds = _timed(pipeline.score, project, xrays, scratch / "out-xrays")
    share = noop_seconds / first_seconds
    print(f"{first.scored} chest X-rays: first run {first_seconds:.2f} s, no-op run {noop_seconds:.3f} s "
          f"({noop.skipped} already scored): {share:.1%} of the first run (target <= 5 %)")  # fmt: skip

    small = scratch / "small"
    started = time.perf_counter()
    _small_files(small, args.files)
    print(f"{args.files} small files written in {time.perf_counter() - started:.0f} s")
    first, first_seconds = _timed(pipeline.score, project, small, scratch / "out-small")
    noops = [_timed(pipeline.score, project, small, scratch / "out-small") for _ in range(3)]
    seconds = [elapsed for _, elapsed in noops]
    print(f"{first.scored} small files: first run {first_seconds:.0f} s, no-op runs "
          f"{', '.join(f'{s:.2f}' for s in seconds)} s (best {min(seconds):.2f} s; target < 10 s)")  # fmt: skip


def _project(scratch: Path, pipeline):
    """A project with the chest X-ray preset's params and its untrained network in production."""
    import yaml

    from medcls.presets import preset_params

    params = preset_params(REPO / "presets" / "chest_xray.yaml")
    params["registry"]["model_name"] = "bench-noop"
    params["score"] |= {"settle_seconds": 0, "heatmaps": "none"}
    (scratch / "params.yaml").write_text(yaml.safe_dump(params))
    project = pipeline.open_project(scratch / "params.yaml")
    _register_untrained(project.params)
    return project


def _register_untrained(params) -> None:
    import mlflow
    from mlflow import MlflowClient

    from medcls.model.network import build_classifier, with_temperature

    size = params.preprocess.image_size
    model = with_temperature(build_classifier(params.train, (size, size, 1), 2, [0.5], [0.05]), 1.0)
    preprocess = params.preprocess.model_copy(update={"channels": 1})
    contract = {"class_names": params.data.class_names, "preprocess": preprocess.model_dump(), "dicom": {}}
    with mlflow.start_run():
        info = mlflow.keras.log_model(model, name="model", metadata=contract)
    version = mlflow.register_model(info.model_uri, params.registry.model_name).version
    MlflowClient().set_registered_model_alias(params.registry.model_name, "production", version)


def _small_files(folder: Path, count: int) -> None:
    """`count` distinct 16x16 PNGs in 100 subfolders."""
    import cv2

    rng = np.random.default_rng(0)
    for number in range(count):
        target = folder / f"{number % 100:02d}" / f"{number:06d}.png"
        if number < 100:
            target.parent.mkdir(parents=True)
        target.write_bytes(cv2.imencode(".png", rng.integers(0, 256, (16, 16), dtype=np.uint8))[1].tobytes())


def _timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


if __name__ == "__main__":
    main()
