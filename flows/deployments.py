"""The scheduled deployments, served from this machine without a work pool (`medcls serve`).

`prefect.yaml` declares the same two deployments for `prefect deploy` to a work pool.
"""

from __future__ import annotations

from pathlib import Path

from flows.scoring import batch_scoring
from flows.training import training_pipeline
from medcls.config import load_params

TRAINING_DEPLOYMENT = "scheduled-retraining"
SCORING_DEPLOYMENT = "scheduled-scoring"


def build_deployments(params_path: Path | str) -> list:
    """Both deployments, on the cron schedules of `schedule.*` in the params file."""
    params_file = Path(params_path).resolve()
    schedule = load_params(params_file).schedule
    arguments = {"params_path": str(params_file)}
    # One run of each at a time: a slow scoring run is never overtaken by the next one.
    return [
        training_pipeline.to_deployment(
            name=TRAINING_DEPLOYMENT, cron=schedule.training, parameters=arguments, concurrency_limit=1
        ),
        batch_scoring.to_deployment(
            name=SCORING_DEPLOYMENT, cron=schedule.scoring, parameters=arguments, concurrency_limit=1
        ),
    ]


def serve_deployments(params_path: Path | str) -> None:
    """Register the deployments and run their flows when due, until interrupted."""
    from prefect import serve

    serve(*build_deployments(params_path))
