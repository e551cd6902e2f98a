"""MLflow helpers shared by train, evaluate, register and score: where a local store keeps things."""

from __future__ import annotations

from pathlib import Path


def ensure_experiment(name: str) -> str:
    """The experiment's id, creating it (artifacts beside a local SQLite store) if needed."""
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow.create_experiment(name, artifact_location=_local_artifact_location(name))


def _local_artifact_location(experiment: str) -> str | None:
    """`mlruns/artifacts/<experiment>` next to `mlruns/mlflow.db`; None (server default) otherwise."""
    folder = local_store_folder()
    return None if folder is None else (folder / "artifacts" / experiment).as_uri()


def local_store_folder() -> Path | None:
    """The folder of a local SQLite tracking store (`mlruns/`); None for any other store."""
    import mlflow

    uri = mlflow.get_tracking_uri()
    if not uri.startswith("sqlite:///"):
        return None
    # sqlite:///relative/path.db or sqlite:////absolute/path.db
    return Path(uri.removeprefix("sqlite:///").split("?")[0]).parent.resolve()
