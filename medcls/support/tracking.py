"""MLflow helpers shared by train, evaluate, register and score."""

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
    import mlflow

    uri = mlflow.get_tracking_uri()
    if not uri.startswith("sqlite:///"):
        return None
    # sqlite:///relative/path.db or sqlite:////absolute/path.db
    database = Path(uri.removeprefix("sqlite:///").split("?")[0])
    return (database.parent / "artifacts" / experiment).resolve().as_uri()
