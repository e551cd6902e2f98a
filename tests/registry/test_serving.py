"""`mlflow models serve` answers with the production model's calibrated probabilities."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from medcls.data.preprocess import load_split
from medcls.scoring import load_production_model


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_mlflow_serves_the_production_model_on_localhost(trained_project, tmp_path: Path):
    name = trained_project.params.registry.model_name
    port = _free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    command = [str(mlflow), "models", "serve", "-m", f"models:/{name}@production", "--env-manager", "local",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    # `--env-manager local` runs `uvicorn` from PATH: this environment's, as if it were activated.
    env = os.environ | {"PATH": f"{mlflow.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with open(tmp_path / "serve.log", "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/ping", server, tmp_path / "serve.log")
        x, _, _ = load_split(trained_project.paths.processed, "test")
        body = json.dumps({"inputs": x[:3].astype(np.float32).tolist()}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            served = np.array(json.loads(response.read())["predictions"])
    finally:
        if server.poll() is None:
            os.killpg(server.pid, 15)
        server.wait(timeout=30)
    expected = load_production_model(name).model.predict(x[:3].astype(np.float32), verbose=0)
    np.testing.assert_allclose(served, expected, atol=1e-5)  # the temperature-scaled probabilities


def _wait_until_up(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow models serve exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"mlflow models serve did not answer within 180 s: {log.read_text()[-2000:]}")
