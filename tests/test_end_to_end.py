"""The whole pipeline as a user runs it, in a fresh copy: the scheduled training flow (DVC under
it), `dvc repro`, an experiment, the scoring flow, the review round trip, and `medcls checkout`."""

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
from flows.training import training_pipeline
from medcls import pipeline
from medcls.support.versioning import data_version
from tests.helpers import REPO, tiny_params, write_params

STAGES = ("reviewed", "ingest", "validate", "preprocess", "train", "evaluate", "register")


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
def test_scheduled_training_is_a_dvc_version_and_every_version_comes_back(tmp_path: Path, prefect_server):
    """On a fresh copy: the training flow (what the schedule runs) reproduces the DVC pipeline;
    `dvc repro` then finds nothing to do; an experiment, a scoring run and a review round trip
    later, `medcls checkout 1` brings version 1's data back from the DVC remote."""
    project_dir = _fresh_copy(tmp_path / "medcls")
    write_params(project_dir, tiny_params())
    _run(["git", "init", "-q"], project_dir)
    _run(["git", "add", "-A"], project_dir)
    _run(["git", "commit", "-qm", "tiny config"], project_dir)

    trained = training_pipeline(params_path=str(project_dir / "params.yaml"))
    assert trained["stages_run"] == list(STAGES) and trained["remote"] == "local"
    assert "Data and pipelines are up to date" in _run(["dvc", "status"], project_dir)
    locked = (project_dir / "dvc.lock").read_text()
    again = _run(["dvc", "repro"], project_dir)
    assert (project_dir / "dvc.lock").read_text() == locked  # the flow and `dvc repro` lock the same
    assert all(f"Stage '{stage}' didn't change, skipping" in again for stage in STAGES)
    assert "Running stage" not in again
    assert "test.auc" in _run(["dvc", "metrics", "show"], project_dir)
    project = pipeline.open_project(project_dir / "params.yaml")
    first = _lineage_of(project, trained["registration"]["version"])

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
    assert "Running stage 'reviewed'" in retrained and "Running stage 'train'" in retrained
    after = yaml.safe_load((project_dir / "dvc.lock").read_text())
    old_pool, new_pool = (_out_hash(lock, "reviewed", "data/reviewed") for lock in (before, after))
    assert old_pool != new_pool
    manifest = pd.read_parquet(project_dir / "data" / "raw" / "manifest.parquet").set_index("image_id")
    assert manifest.loc[reviewed["image_id"], "label"].tolist() == reviewed["label"].tolist()  # the doctor's labels
    assert _out_hash(after, "ingest", "data/raw") != first["data/raw"]

    # Version 1 comes back exactly, from the remote: the local cache is gone.
    _run(["dvc", "push"], project_dir)
    shutil.rmtree(project_dir / ".dvc" / "cache")
    restored = _run(["medcls", "checkout", trained["registration"]["version"]], project_dir)
    assert f"data/raw ({first['data/raw']})" in restored
    assert data_version(project_dir / "data" / "raw") == first["data/raw"]
    assert data_version(project_dir / "data" / "processed") == first["data/processed"]
    assert yaml.safe_load((project_dir / "models" / "training.json").read_text())["run_id"] == first["run_id"]


def _lineage_of(project, version: str) -> dict[str, str]:
    """What the MLflow run of `version` records of its data: the dvc.lock logged with it and the
    datasets, all naming the hashes `dvc repro` locked."""
    client = mlflow.MlflowClient()
    registered = client.get_model_version(project.params.registry.model_name, version)
    run = client.get_run(registered.run_id)
    logged_lock = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="lineage/dvc.lock")
    logged, lock = (yaml.safe_load(Path(path).read_text()) for path in (logged_lock, project.paths.dvc_lock))
    outputs = (("ingest", "data/raw"), ("preprocess", "data/processed"))
    hashes = {path: _out_hash(lock, stage, path) for stage, path in outputs}
    assert {path: _out_hash(logged, stage, path) for stage, path in outputs} == hashes
    assert {d.dataset.name: d.dataset.digest for d in run.inputs.dataset_inputs} == hashes  # the UI's Datasets column
    assert registered.tags["data_version"] == run.data.tags["data_version"] == hashes["data/raw"]
    assert registered.tags["dvc_lock"] == "lineage/dvc.lock" and run.data.tags["git_commit"]
    assert run.data.params["train.epochs"] == "1"
    return {**hashes, "run_id": run.info.run_id}


def _out_hash(lock: dict, stage: str, path: str) -> str:
    return next(out["md5"] for out in lock["stages"][stage]["outs"] if out["path"] == path)
