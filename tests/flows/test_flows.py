"""Prefect wiring: both flows on the real Prefect engine, deployments on the params' schedules."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from prefect.states import Failed
from prefect_dask import DaskTaskRunner

from flows.deployments import SCORING_DEPLOYMENT, TRAINING_DEPLOYMENT, build_deployments, deploy_to_pool
from flows.retries import retry_unless_user_error
from flows.scoring import batch_scoring, task_runner
from flows.training import training_pipeline
from medcls.config import load_params
from medcls.data.demo import make_demo_inbox
from medcls.errors import ConfigError, StageFailed, ValidationFailed
from medcls.support.files import read_json
from tests.helpers import tiny_params, write_params


@pytest.mark.slow
def test_scoring_flow_labels_the_inbox_with_the_production_model(trained_project, tmp_path: Path, prefect_server):
    params_path = write_params(tmp_path, yaml.safe_load(trained_project.paths.params.read_text()))
    inbox = make_demo_inbox(trained_project.paths.raw, tmp_path / "data" / "inbox", 5, seed=9)
    scored = batch_scoring(params_path=str(params_path))
    predictions = pd.read_csv(scored["predictions_path"], dtype={"model_version": str})
    assert scored["scored"] == len(inbox) == len(predictions)
    production = read_json(trained_project.paths.registration)["production_version"]
    assert set(predictions["model_version"]) == {production} == {scored["model_version"]}


@pytest.mark.slow
def test_the_training_flow_needs_a_dvc_project(tmp_path: Path, prefect_server):
    params_path = write_params(tmp_path, tiny_params())
    with pytest.raises(StageFailed, match="is not a DVC project"):
        training_pipeline(params_path=str(params_path))


def test_user_errors_are_not_retried():
    assert not retry_unless_user_error(None, None, Failed(data=ConfigError("params.yaml: bad")))
    assert not retry_unless_user_error(None, None, Failed(data=ValidationFailed("validation failed")))
    assert retry_unless_user_error(None, None, Failed(data=OSError("share unavailable")))


def test_deployments_run_on_the_params_schedules(tmp_path: Path):
    params_path = write_params(tmp_path, tiny_params(schedule={"training": "0 5 * * 1", "scoring": "*/5 * * * *"}))
    deployments = {d.name: d for d in build_deployments(params_path)}
    assert set(deployments) == {TRAINING_DEPLOYMENT, SCORING_DEPLOYMENT}
    assert deployments[TRAINING_DEPLOYMENT].schedules[0].schedule.cron == "0 5 * * 1"
    assert deployments[SCORING_DEPLOYMENT].schedules[0].schedule.cron == "*/5 * * * *"
    assert deployments[SCORING_DEPLOYMENT].parameters == {"params_path": str(params_path.resolve())}


@pytest.mark.slow
def test_deploying_to_a_work_pool_uses_the_params_schedules(tmp_path: Path, prefect_server):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    params_path = write_params(tmp_path, tiny_params(schedule={"training": "0 4 * * 2", "scoring": "*/10 * * * *"}))
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="medcls-test", type="process"), overwrite=True)
        ids = deploy_to_pool(params_path, "medcls-test")
        deployments = {d.name: d for d in (client.read_deployment(i) for i in ids)}
    assert {name: d.schedules[0].schedule.cron for name, d in deployments.items()} == {
        TRAINING_DEPLOYMENT: "0 4 * * 2",
        SCORING_DEPLOYMENT: "*/10 * * * *",
    }
    scoring = deployments[SCORING_DEPLOYMENT]
    assert (scoring.work_pool_name, scoring.entrypoint) == ("medcls-test", "flows/scoring.py:batch_scoring")
    assert scoring.parameters == {"params_path": str(params_path.resolve())}
    assert scoring.global_concurrency_limit.limit == 1


@pytest.mark.slow
def test_scoring_flow_maps_chunks_over_a_local_dask_cluster(trained_project, tmp_path: Path, prefect_server):
    params = yaml.safe_load((trained_project.paths.root / "params.yaml").read_text())
    params["score"] |= {"runner": "dask", "chunk_size": 3}
    params_path = write_params(tmp_path, params)
    assert isinstance(task_runner(load_params(params_path).score), DaskTaskRunner)
    copied = make_demo_inbox(trained_project.paths.raw, tmp_path / "inbox", 8, seed=3)
    scored = batch_scoring(params_path=str(params_path), inbox=str(tmp_path / "inbox"))
    predictions = pd.read_csv(tmp_path / "outputs" / "predictions.csv")
    assert scored["scored"] == len(copied) == len(predictions) == predictions["image_id"].nunique()
