"""Prefect flow `batch-scoring`: label the inbox with the `production` model.

The flow hands its task runner's map to the same step the CLI runs (`pipeline.score`), which cuts
the inbox into chunks (`score.chunk_size`): one `score-chunk` task runs per chunk, on this
machine's threads or, with `score.runner: dask`, on a Dask cluster (`score.dask_address`, or a
local one) for inboxes larger than one machine. Workers need the inbox and output folders at the
same paths (a shared disk).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from prefect import flow, task, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.retries import retry_unless_user_error
from medcls import pipeline


@task(
    name="score-chunk",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=10,
    retry_condition_fn=retry_unless_user_error,
)
def score_chunk_task(scorer, files: list[Path]):
    """One chunk, on whichever worker runs it (the scorer loads its model there once per process)."""
    return scorer(files)


def task_runner(cfg):
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
    # The task runner comes from params, so it is entered here rather than named in the
    # decorator (a subflow with its own runner would cost a second flow run, about a second).
    with task_runner(project.params.score) as runner:

        def as_tasks(scorer, chunks: list[list[Path]]):
            futures = runner.map(score_chunk_task, {"scorer": unmapped(scorer), "files": chunks})
            return (future.result() for future in futures)  # in order

        result = pipeline.score(project, Path(inbox) if inbox else None, map_chunks=as_tasks)
    print(result.summary())
    # On the flow run's Artifacts tab: the counts, what backs the auto labels, the drift tests.
    create_markdown_artifact(result.markdown(), key="batch-scoring-report", description=result.summary()[:500])
    fields = {key: value for key, value in asdict(result).items() if key != "report"}
    return {key: str(value) if isinstance(value, Path) else value for key, value in fields.items()} | {
        "report": result.report.summary() if result.report else ""
    }


if __name__ == "__main__":
    batch_scoring()
