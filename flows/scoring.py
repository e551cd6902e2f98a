"""Prefect flow `batch-scoring`: label the inbox with the `production` model."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.retries import retry_unless_user_error
from medcls import pipeline

score = task(
    pipeline.score,
    name="score-inbox",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=10,
    retry_condition_fn=retry_unless_user_error,
)


@flow(name="batch-scoring", log_prints=True)
def batch_scoring(params_path: str = "params.yaml", inbox: str | None = None) -> dict:
    """Score new images in `inbox` (default: `score.inbox` of the params file)."""
    project = pipeline.open_project(params_path)
    result = score(project, Path(inbox) if inbox else None)
    print(
        f"scored {result.scored} images with v{result.model_version}: {result.auto} auto-labelled, "
        f"{result.review} to review; {result.skipped} already scored, {result.quarantined} quarantined"
    )
    return {key: str(value) if isinstance(value, Path) else value for key, value in asdict(result).items()}


if __name__ == "__main__":
    batch_scoring()
