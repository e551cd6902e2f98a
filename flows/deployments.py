"""The scheduled deployments, on the cron schedules of `schedule:` in params.yaml (the one place
they are set): served from this machine (`python -m flows serve`) or deployed to a work pool
(`python -m flows deploy --pool NAME`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flows.scoring import batch_scoring
from flows.training import training_pipeline
from medcls import pipeline

TRAINING_DEPLOYMENT = "scheduled-retraining"
SCORING_DEPLOYMENT = "scheduled-scoring"
SOURCE_ROOT = Path(__file__).resolve().parents[1]  # the checkout that holds flows/ and medcls/


@dataclass(frozen=True)
class Scheduled:
    name: str
    flow: object
    entrypoint: str  # relative to SOURCE_ROOT, for workers that load the flow from its file
    cron: str
    description: str


def scheduled(params_path: Path | str) -> list[Scheduled]:
    """Both deployments of the project whose params file is `params_path`."""
    schedule = pipeline.open_project(params_path).params.schedule
    return [
        Scheduled(TRAINING_DEPLOYMENT, training_pipeline, "flows/training.py:training_pipeline", schedule.training,
                  "Retrain on the current data version; production moves only if the new model beats it."),
        Scheduled(SCORING_DEPLOYMENT, batch_scoring, "flows/scoring.py:batch_scoring", schedule.scoring,
                  "Label new inbox images with the production model; uncertain ones go to the review queue."),
    ]  # fmt: skip


def build_deployments(params_path: Path | str) -> list:
    """Both deployments, for `prefect.serve` (one run of each at a time: a slow scoring run is
    never overtaken by the next one)."""
    arguments = {"params_path": str(Path(params_path).resolve())}
    return [
        job.flow.to_deployment(
            name=job.name, cron=job.cron, parameters=arguments, description=job.description, concurrency_limit=1
        )
        for job in scheduled(params_path)
    ]


def serve_deployments(params_path: Path | str) -> None:
    """Register the deployments and run their flows when due, until interrupted."""
    from prefect import serve

    serve(*build_deployments(params_path))


def deploy_to_pool(params_path: Path | str, pool: str) -> list[str]:
    """Deploy both flows to the work pool `pool` (e.g. `prefect work-pool create medcls --type
    process`, then `prefect worker start --pool medcls`); the worker runs them from this checkout."""
    arguments = {"params_path": str(Path(params_path).resolve())}
    return [
        str(
            job.flow.from_source(source=str(SOURCE_ROOT), entrypoint=job.entrypoint).deploy(
                name=job.name,
                work_pool_name=pool,
                cron=job.cron,
                parameters=arguments,
                description=job.description,
                concurrency_limit=1,
                print_next_steps=False,
            )
        )
        for job in scheduled(params_path)
    ]
