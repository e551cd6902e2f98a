"""Shared test set-up: real MLflow, DVC and Prefect, on temporary folders.

One MLflow tracking store (its migrations take seconds) and one Prefect home serve the whole
session; each test project registers its model under its own name, so tests stay independent.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from medcls.runtime import RUNTIME_ENVIRONMENT
from tests.helpers import tiny_params, write_params

_session_dir = Path(tempfile.mkdtemp(prefix="medcls-tests-"))


def pytest_configure(config: pytest.Config) -> None:
    """Before any test module imports Prefect or MLflow: point both at the session's folder."""
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_session_dir / 'mlruns' / 'mlflow.db'}"
    (_session_dir / "mlruns").mkdir(parents=True, exist_ok=True)
    os.environ["PREFECT_HOME"] = str(_session_dir / "prefect")
    for key, value in RUNTIME_ENVIRONMENT.items():
        os.environ.setdefault(key, value)


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_session_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory: pytest.TempPathFactory):
    """A tiny project taken through every training step once, its model in production."""
    from medcls import pipeline

    project = pipeline.open_project(write_params(tmp_path_factory.mktemp("trained"), tiny_params()))
    for step in (pipeline.ingest, pipeline.validate, pipeline.preprocess, pipeline.train, pipeline.evaluate):
        step(project)
    pipeline.register(project)
    return project


@pytest.fixture(scope="session")
def prefect_server():
    """One Prefect test server for every flow test of the session (it takes ~20 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield
