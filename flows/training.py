"""Prefect flow `training-pipeline`: the DVC pipeline, one task per dvc.yaml stage.

Each task reproduces its stage through DVC, exactly as `dvc repro` does: a stage whose code,
inputs and params did not change is skipped, dvc.lock and the DVC cache are updated, and at the
end everything is pushed to the default DVC remote. A scheduled retraining is therefore a DVC
version like any manual one; a second run (or a `dvc repro`) meanwhile stops at DVC's lock.
"""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.retries import retry_unless_user_error
from medcls import pipeline

# A failed stage is deterministic (its command exited non-zero): no retry. A push can meet a
# passing network fault: retried.
reproduce = task(pipeline.reproduce, cache_policy=NO_CACHE)
push = task(pipeline.push, name="dvc-push", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=30,
            retry_condition_fn=retry_unless_user_error)  # fmt: skip


@flow(name="training-pipeline", log_prints=True)
def training_pipeline(params_path: str = "params.yaml") -> dict:
    """Reproduce the pipeline of the project whose params file is `params_path`."""
    project = pipeline.open_project(params_path)
    ran = [stage for stage in pipeline.stages(project) if reproduce.with_options(name=stage)(project, stage)]
    print(f"stages run: {', '.join(ran) or 'none (nothing changed)'}")
    remote = push(project)
    print(f"pushed to DVC remote '{remote}'" if remote else "no DVC remote configured: nothing pushed")
    result = pipeline.outcome(project)
    if result["registration"]:
        print(f"{result['registration']['model_name']} v{result['registration']['version']}: "
              f"{result['registration']['reason']}")  # fmt: skip
    return {"stages_run": ran, "remote": remote, **result}


if __name__ == "__main__":
    training_pipeline()
