"""Accuracy against the published MedMNIST v2 figures: train each dataset's preset as is and print
our test AUC / ACC and training time next to the published rows.

Each preset (`presets/<dataset>.yaml`) is an overlay of the defaults; `--defaults` trains the
defaults instead, with only `data.source` taken from the preset (what a new user gets). The run
goes through the same
pipeline steps as `dvc repro` (ingest, validate, preprocess, train, evaluate) in a work folder,
tracked in this repository's MLflow store (`make ui` shows the runs side by side). Ingest and
preprocess are reused while their params are unchanged.

    .venv/bin/python bench/accuracy.py [bloodmnist chest_xray] [--defaults] [--set train.epochs=3 ...] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PRESETS = REPO / "presets"

# MedMNIST v2 (Yang et al. 2023), test AUC / ACC; chest_xray's test split is PneumoniaMNIST's.
PUBLISHED = {
    "bloodmnist": {
        "ResNet-18 (28)": (0.998, 0.958),
        "ResNet-18 (224)": (0.998, 0.963),
        "ResNet-50 (224)": (0.997, 0.950),
        "AutoKeras": (0.998, 0.961),
        "Google AutoML Vision": (0.998, 0.966),
    },
    "chest_xray": {
        "ResNet-18 (28)": (0.944, 0.854),
        "ResNet-18 (224)": (0.956, 0.864),
        "ResNet-50 (224)": (0.962, 0.884),
        "AutoKeras": (0.947, 0.878),
        "Google AutoML Vision": (0.991, 0.946),
    },
}
TARGETS = {"bloodmnist": (0.998, 0.967), "chest_xray": (0.970, 0.900)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", default=list(PUBLISHED), choices=list(PUBLISHED))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a params key")
    parser.add_argument("--defaults", action="store_true", help="params.yaml's defaults, only data.source changed")
    parser.add_argument("--workdir", type=Path, default=REPO / ".bench" / "accuracy")
    args = parser.parse_args()
    # Runs land in this repository's MLflow store, beside the pipeline's own.
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{REPO / 'mlruns' / 'mlflow.db'}")
    suffix = "-defaults" if args.defaults else ""
    results = {
        name: run_preset(name, args.workdir / f"{name}{suffix}", args.set, args.defaults) for name in args.datasets
    }
    print(markdown_table(results))


def run_preset(name: str, workdir: Path, overrides: list[str], defaults: bool = False) -> dict:
    from medcls import pipeline
    from medcls.data.preprocess import load_contract
    from medcls.presets import preset_params

    params = preset_params(PRESETS / f"{name}.yaml")
    if defaults:
        source = params["data"]["source"]
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        params["data"]["source"] = source
    for override in overrides:
        key, _, value = override.partition("=")
        _set(params, key, yaml.safe_load(value))
    source = params["data"]["source"]
    scheme, _, location = source.partition(":")
    params["data"]["source"] = f"{scheme}:{(REPO / location).resolve()}"  # the work folder is elsewhere
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    project = pipeline.open_project(workdir / "params.yaml")
    _reuse_or_run(project, "data", params["data"], params["seed"], lambda: pipeline.ingest(project))
    _reuse_or_run(project, "preprocess", [params["data"], params["preprocess"]], 0, lambda: _prepare(project))
    started = time.perf_counter()
    trained = pipeline.train(project)
    stage_minutes = (time.perf_counter() - started) / 60  # the probes and every search candidate too
    metrics = pipeline.evaluate(project).metrics
    result = {
        "test": metrics["test"],
        "val": metrics["val"],
        "train_minutes": trained.seconds / 60,
        "train_stage_minutes": stage_minutes,
        "epochs": trained.epochs_run,
        "best_epoch": trained.best_epoch + 1,
        "images_per_second": trained.images_per_second,
        "run_id": trained.run_id,
        # What the settings became (`auto` ones resolved from the data, the budget and this machine).
        "settings": {
            "image_size": load_contract(project.paths.processed)["preprocess"]["image_size"],
            "stem_stride": trained.resolved["resolved.train.stem_stride"],
            "widths": trained.resolved["resolved.train.widths"],
            "planned_epochs": trained.resolved["resolved.train.epochs"],
            "batch_size": params["train"]["batch_size"],
        },
    }
    (workdir / "result.json").write_text(json.dumps(result, indent=2))
    print(f"{name}: {json.dumps({k: v for k, v in result.items() if k not in ('test', 'val')})}", file=sys.stderr)
    return result


def _prepare(project) -> None:
    from medcls import pipeline

    pipeline.validate(project)
    pipeline.preprocess(project)


def _reuse_or_run(project, stage: str, inputs: object, seed: int, run) -> None:
    """Run a stage unless its stamp says it already ran on the same inputs."""
    stamp = project.paths.root / f".{stage}.stamp"
    digest = hashlib.sha256(json.dumps([inputs, seed], sort_keys=True).encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    if stage == "data":
        shutil.rmtree(project.paths.root / "data", ignore_errors=True)
    run()
    stamp.write_text(digest)


def _set(tree: dict, dotted: str, value: object) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[leaf] = value


def markdown_table(results: dict[str, dict]) -> str:
    lines = [
        "| data | method | val AUC / ACC | test AUC | test ACC | training: model's epochs / stage (2-core CPU) |",
        "|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        test = result["test"]
        target_auc, target_acc = TARGETS[name]
        lines.append(
            f"| {name} | **medcls** ({_settings(result)}; {result['epochs']} epochs, best {result['best_epoch']}) "
            f"| {result['val']['auc']:.4f} / {result['val']['acc']:.4f} "
            f"| **{test['auc']:.4f}** | **{test['acc']:.4f}** "
            f"| {result['train_minutes']:.1f} / {result['train_stage_minutes']:.1f} min |"
        )
        lines.append(f"| {name} | target | | ≥ {target_auc:.3f} | ≥ {target_acc:.3f} | ≤ 30 min |")
        for method, (auc, acc) in PUBLISHED[name].items():
            lines.append(f"| {name} | {method} | | {auc:.3f} | {acc:.3f} | |")
    return "\n".join(lines)


def _settings(result: dict) -> str:
    settings = result.get("settings", {})
    return ", ".join(f"{key} {value}" for key, value in settings.items())


if __name__ == "__main__":
    main()
