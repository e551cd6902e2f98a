"""Scoring throughput: the Prefect flow `batch-scoring` over an inbox of image files, against
(a) `model.predict` on the same images already decoded and prepared in memory (the ceiling) and
(b) a plain loop that reads each file with `cv2.imread` and predicts it alone (the naive way),
side by side in one run, with the same model.

The model is the chest X-ray preset's network: the one `bench/accuracy.py` trained (its
`models/model.keras`) when present, else the same network untrained (the cost is the same; with
an untrained model nearly every image goes to review and gets a heat map). It is registered as
`production` in a temporary MLflow store. The flow's own Prefect server is started before the
timing (a warm-up run on one image). The flow (each time into a fresh output folder, so it scores
every image) and the ceiling run `--repeats` times, interleaved; the best run of each counts.

    .venv/bin/python bench/scoring.py [--images 5000] [--naive-images 300] [--repeats 3] [--data ...]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "chest_xray")
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--naive-images", type=int, default=300, help="the plain loop is slow: time it on fewer")
    parser.add_argument("--repeats", type=int, default=3, help="flow and ceiling runs, interleaved; the best counts")
    parser.add_argument("--model", type=Path, default=REPO / ".bench" / "accuracy" / "chest_xray" / "models")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="medcls-bench-scoring-") as scratch:
        run(args, Path(scratch))


def run(args: argparse.Namespace, scratch: Path) -> None:
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{scratch / 'mlflow.db'}"
    os.environ["PREFECT_HOME"] = str(scratch / "prefect")
    from medcls.presets import preset_params

    params = preset_params(REPO / "presets" / "chest_xray.yaml")
    params["registry"]["model_name"] = "bench-scoring"
    (scratch / "params.yaml").write_text(yaml.safe_dump(params))
    from flows.scoring import batch_scoring
    from medcls import pipeline
    from medcls.config import Params
    from medcls.data.images import ImageLimits
    from medcls.data.preprocess import prepare_files
    from medcls.scoring import load_production_model
    from medcls.scoring.inbox import InboxFile
    from medcls.scoring.reader import ChunkReader

    config = Params.model_validate(params)
    files = sorted(args.data.rglob("*.jpeg"))[: args.images]
    inbox = scratch / "inbox"
    inbox.mkdir()
    for number, file in enumerate(files):  # links: the inbox costs no disk
        os.link(file, inbox / f"{number:05d}-{file.name}")
    model, trained = register_model(config, args.model)
    pipeline.open_project(scratch / "params.yaml")

    warm_up = scratch / "warm-up"
    warm_up.mkdir()
    os.link(files[0], warm_up / files[0].name)
    batch_scoring(params_path=str(scratch / "params.yaml"), inbox=str(warm_up))
    arrays = prepare_files(files, config.preprocess).astype(np.float32)
    model.predict(arrays[:64], batch_size=config.score.batch_size, verbose=0)

    production = load_production_model(config.registry.model_name)
    inbox_files = [InboxFile(file, file.stat().st_size, file.stat().st_mtime_ns) for file in files]
    seconds: dict[str, list[float]] = {"flow": [], "ceiling": [], "read": [], "predict": []}
    for repeat in range(args.repeats):  # interleaved, so that all see the same machine
        params["score"]["output_dir"] = f"outputs-{repeat}"  # each run scores every image afresh
        (scratch / "params.yaml").write_text(yaml.safe_dump(params))
        result = timed(seconds["flow"], batch_scoring, params_path=str(scratch / "params.yaml"), inbox=str(inbox))
        timed(seconds["ceiling"], model.predict, arrays, batch_size=config.score.batch_size, verbose=0)
        timed(seconds["read"], lambda: list(ChunkReader(production, ImageLimits(), set()).fresh(inbox_files)))
        timed(seconds["predict"], predict_like_the_flow, production.model, arrays, config.score.batch_size)
    rate = {name: len(files) / min(values) for name, values in seconds.items()}
    # Decoding and predicting both need every core here, so the flow can at best take their sum.
    bound = 1 / (1 / rate["read"] + 1 / rate["predict"])

    naive = files[: args.naive_images]
    started = time.perf_counter()
    for file in naive:
        naive_predict(model, file, config.preprocess.image_size)
    naive_rate = len(naive) / (time.perf_counter() - started)

    print(
        f"{len(files)} chest X-ray JPEGs (224x224) -> {config.preprocess.image_size} px, "
        f"batch {config.score.batch_size}, "
        f"{os.cpu_count()} CPUs, {'trained' if trained else 'untrained'} chest_xray preset model; "
        f"{result['review']} of {result['scored']} to review (heat maps: {config.score.heatmaps}); "
        f"best of {args.repeats} runs each"
    )
    ceiling = rate["ceiling"]
    flow_ratio = f"flow / ceiling {rate['flow'] / ceiling:.2f}"
    rows = [
        ("batch-scoring flow (end to end)", rate["flow"], seconds["flow"], flow_ratio),
        ("(a) model.predict on prepared arrays", ceiling, seconds["ceiling"], "the ceiling"),
        ("    its read step alone (decode, hash, prepare)", rate["read"], seconds["read"], ""),
        ("    its predict step alone (prepared arrays)", rate["predict"], seconds["predict"], ""),
        ("    read + predict, one after the other", bound, [], f"bound / ceiling {bound / ceiling:.2f}"),
    ]
    for name, value, runs, ratio in rows:
        print(f"  {name:48s} {value:8.1f} images/s   {_rates(files, runs):16s} {ratio}")
    print(
        f"  {'(b) cv2.imread + predict, one by one':48s} {naive_rate:8.1f} images/s   {'':16s} "
        f"flow / plain loop {rate['flow'] / naive_rate:.1f}x"
    )


def timed(runs: list[float], function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    runs.append(time.perf_counter() - started)
    return result


def predict_like_the_flow(model, arrays: np.ndarray, batch_size: int) -> None:
    """The flow's own predict step: batches through the model with its features as a second output."""
    from medcls.model.network import with_features

    network = with_features(model)
    for start in range(0, len(arrays), batch_size):
        network.predict_on_batch(arrays[start : start + batch_size])


def _rates(files: list[Path], seconds: list[float]) -> str:
    return " ".join(f"{len(files) / value:.0f}" for value in seconds) or "-"


def naive_predict(model, file: Path, size: int) -> np.ndarray:
    """What one writes first: read, resize, predict, one image at a time."""
    import cv2

    image = cv2.resize(cv2.imread(str(file), cv2.IMREAD_GRAYSCALE), (size, size), interpolation=cv2.INTER_AREA)
    return model.predict(image[None, :, :, None].astype(np.float32), verbose=0)


def register_model(config, model_dir: Path):
    """Log and register the model as `production` in the bench's own MLflow store."""
    import keras
    import mlflow
    from mlflow import MlflowClient

    from medcls.model.network import build_classifier, with_temperature

    trained = (model_dir / "model.keras").exists()
    preprocess = config.preprocess.model_copy(update={"channels": 1})
    size = preprocess.image_size
    if trained:
        model = keras.saving.load_model(model_dir / "model.keras")
    else:
        model = with_temperature(build_classifier(config.train, (size, size, 1), 2, [0.5], [0.05]), 1.0)
    contract = {"class_names": config.data.class_names, "preprocess": preprocess.model_dump(), "dicom": {}}
    with mlflow.start_run():
        info = mlflow.keras.log_model(model, name="model", metadata=contract)
    version = mlflow.register_model(info.model_uri, config.registry.model_name).version
    MlflowClient().set_registered_model_alias(config.registry.model_name, "production", version)
    return model, trained


if __name__ == "__main__":
    main()
