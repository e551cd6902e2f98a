"""Prefect flow `training-pipeline`: ingest -> validate -> preprocess -> train -> evaluate ->
register, each step a task calling the same function as the matching `dvc.yaml` stage."""

from __future__ import annotations

from dataclasses import asdict

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.retries import retry_unless_user_error
from medcls import pipeline

# Retries where they can help: reading a source on a network share, and the tracking store or
# registry being briefly unavailable. Deterministic steps fail fast.
_retrying = {"retries": 2, "retry_delay_seconds": 10, "retry_condition_fn": retry_unless_user_error}
ingest = task(pipeline.ingest, name="ingest", cache_policy=NO_CACHE, **_retrying)
validate = task(pipeline.validate, name="validate", cache_policy=NO_CACHE)
preprocess = task(pipeline.preprocess, name="preprocess", cache_policy=NO_CACHE)
train = task(pipeline.train, name="train", cache_policy=NO_CACHE)
evaluate = task(pipeline.evaluate, name="evaluate", cache_policy=NO_CACHE, **_retrying)
register = task(pipeline.register, name="register", cache_policy=NO_CACHE, **_retrying)


@flow(name="training-pipeline", log_prints=True)
def training_pipeline(params_path: str = "params.yaml") -> dict:
    """Run the whole training pipeline for the project whose params file is `params_path`."""
    project = pipeline.open_project(params_path)
    ingested = ingest(project)
    print(f"ingested {ingested.images} images, {ingested.quarantined} quarantined")
    validate(project)
    preprocess(project)
    trained = train(project)
    print(f"trained {trained.epochs_run} epochs on {trained.device}; MLflow run {trained.run_id}")
    metrics = evaluate(project).metrics
    print(f"test AUC {metrics['test']['auc']:.4f}, ACC {metrics['test']['acc']:.4f}")
    registration = register(project)
    print(f"{registration.model_name} v{registration.version}: {registration.reason}")
    return {"run_id": trained.run_id, "metrics": metrics, "registration": asdict(registration)}


if __name__ == "__main__":
    training_pipeline()
