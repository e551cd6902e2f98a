"""Prefect flow `batch-scoring`: label the inbox with the `production` model.

The inbox is cut into chunks (`score.chunk_size`) and one `score-chunk` task runs per chunk, on
this machine's threads or, with `score.runner: dask`, on a Dask cluster (`score.dask_address`, or
a local one) for inboxes larger than one machine. This flow holds the output folder's lock and
merges each chunk's rows as they arrive, so a killed run loses no saved row and a rerun scores
only what is left. Workers need the inbox and output folders at the same paths (a shared disk).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from prefect import flow, task, unmapped
from prefect.cache_policies import NO_CACHE

from flows.retries import retry_unless_user_error
from medcls import pipeline
from medcls.config import ScoreConfig
from medcls.score import ChunkResult, load_model_version, load_production_model, score_chunk, score_inbox


@task(
    name="score-chunk",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=10,
    retry_condition_fn=retry_unless_user_error,
)
def score_chunk_task(
    files: list[Path], model_name: str, version: str, cfg: ScoreConfig, out_dir: Path, done: frozenset[str]
) -> ChunkResult:
    """One chunk, on whichever worker runs it: the model is loaded there once per process."""
    return score_chunk(files, load_model_version(model_name, version), cfg, out_dir, done)


def task_runner(cfg: ScoreConfig):
    """Threads of this process (chunks one after another: each already uses every core), or Dask."""
    if cfg.runner == "dask":
        from prefect_dask import DaskTaskRunner

        if cfg.dask_address:
            return DaskTaskRunner(address=cfg.dask_address)
        local = {"n_workers": 2, "threads_per_worker": 1, "host": "127.0.0.1", "dashboard_address": None}
        return DaskTaskRunner(cluster_kwargs=local)
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=1)


@flow(name="batch-scoring", log_prints=True)
def batch_scoring(params_path: str = "params.yaml", inbox: str | None = None) -> dict:
    """Score new images in `inbox` (default: `score.inbox` of the params file)."""
    project = pipeline.open_project(params_path)
    cfg, model_name, out_dir = project.params.score, project.params.registry.model_name, project.outputs
    production = load_production_model(model_name)
    # The task runner comes from params, so it is entered here rather than named in the
    # decorator (a subflow with its own runner would cost a second flow run, about a second).
    with task_runner(cfg) as runner:

        def as_tasks(chunks: list[list[Path]], done: frozenset[str]):
            static = dict(model_name=model_name, version=production.version, cfg=cfg, out_dir=out_dir, done=done)
            parameters = {"files": chunks} | {key: unmapped(value) for key, value in static.items()}
            return (future.result() for future in runner.map(score_chunk_task, parameters))  # in order

        result = score_inbox(cfg, production, Path(inbox) if inbox else project.inbox, out_dir, as_tasks)
    print(result.summary())
    return {key: str(value) if isinstance(value, Path) else value for key, value in asdict(result).items()}


if __name__ == "__main__":
    batch_scoring()
