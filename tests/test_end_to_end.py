"""The whole pipeline as a user runs it: `dvc repro` in a fresh copy, then the scoring flow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from flows.scoring import batch_scoring
from medcls import pipeline
from medcls.registry import production_version
from tests.helpers import REPO, tiny_params, write_params

STAGES = ("ingest", "validate", "preprocess", "train", "evaluate", "register")


def _run(command: list[str], cwd: Path) -> str:
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    environment.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    done = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def _fresh_copy(target: Path) -> Path:
    """The project's files as a clone has them (tracked and new, not ignored; no local dvc.lock)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True)
    for name in listed.stdout.splitlines():
        if (REPO / name).is_file() and name != "dvc.lock":
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    return target


@pytest.mark.slow
def test_dvc_repro_experiment_and_scoring_flow_from_a_fresh_copy(tmp_path: Path, prefect_server):
    project_dir = _fresh_copy(tmp_path / "medcls")
    write_params(project_dir, tiny_params())
    _run(["git", "init", "-q"], project_dir)
    _run(["git", "add", "-A"], project_dir)
    _run(["git", "commit", "-qm", "tiny config"], project_dir)

    first = _run(["dvc", "repro"], project_dir)
    assert all(f"Running stage '{stage}'" in first for stage in STAGES)
    metrics = yaml.safe_load((project_dir / "reports" / "metrics.json").read_text())
    assert {"auc", "acc"} <= set(metrics["test"]) and {"auc", "acc"} <= set(metrics["val"])
    assert "test.auc" in _run(["dvc", "metrics", "show"], project_dir)

    # The MLflow run records the data version DVC locked for data/raw.
    project = pipeline.open_project(project_dir / "params.yaml")
    lock = yaml.safe_load((project_dir / "dvc.lock").read_text())
    raw_hash = next(out["md5"] for out in lock["stages"]["ingest"]["outs"] if out["path"] == "data/raw")
    run_id = yaml.safe_load((project_dir / "models" / "training.json").read_text())["run_id"]
    assert mlflow.get_run(run_id).data.tags["data_version"] == raw_hash
    production = production_version(project.params.registry.model_name)
    assert production is not None and production.run_id == run_id

    second = _run(["dvc", "repro"], project_dir)
    assert all(f"Stage '{stage}' didn't change, skipping" in second for stage in STAGES)

    _run(["dvc", "plots", "show"], project_dir)
    assert (project_dir / "dvc_plots" / "index.html").exists()

    experiment = _run(["dvc", "exp", "run", "-S", "train.epochs=2"], project_dir)
    assert "Stage 'preprocess' didn't change, skipping" in experiment and "Running stage 'train'" in experiment
    assert len(pd.read_csv(project_dir / "reports" / "training_history.csv")) == 2
    assert "train.epochs" in _run(["dvc", "exp", "show", "--csv"], project_dir)

    inbox = pipeline.demo_inbox(project)
    scored = batch_scoring(params_path=str(project_dir / "params.yaml"))
    predictions = pd.read_csv(scored["predictions_path"])
    assert len(predictions) == len(inbox) == project.params.score.demo_images
    assert set(predictions["decision"]) <= {"auto", "review"}

    # The review round trip: reviewed labels become a new DVC version of the pool, and training uses it.
    before = yaml.safe_load((project_dir / "dvc.lock").read_text())
    reviewed = predictions.head(2)[["image_id", "label"]].assign(reviewer="dr.who")
    reviewed.to_csv(tmp_path / "reviewed.csv", index=False)
    _run(["medcls", "review", "import", str(tmp_path / "reviewed.csv")], project_dir)
    retrained = _run(["dvc", "repro"], project_dir)
    assert "Running stage 'ingest'" in retrained and "Running stage 'train'" in retrained
    after = yaml.safe_load((project_dir / "dvc.lock").read_text())
    old_pool, new_pool = (_out_hash(lock, "reviewed", "data/reviewed") for lock in (before, after))
    assert old_pool != new_pool
    cache = project_dir / ".dvc" / "cache" / "files" / "md5"
    assert (cache / old_pool[:2] / old_pool[2:]).exists()  # the previous version stays retrievable
    manifest = pd.read_parquet(project_dir / "data" / "raw" / "manifest.parquet").set_index("image_id")
    assert manifest.loc[reviewed["image_id"], "label"].tolist() == reviewed["label"].tolist()  # the doctor's labels


def _out_hash(lock: dict, stage: str, path: str) -> str:
    return next(out["md5"] for out in lock["stages"][stage]["outs"] if out["path"] == path)
