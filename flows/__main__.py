"""`python -m flows serve | deploy`: the scheduled Prefect deployments of a medcls project."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.deployments import deploy_to_pool, serve_deployments

app = typer.Typer(help="Run medcls's Prefect deployments on params.yaml's schedules.", add_completion=False)
ParamsOption = Annotated[Path, typer.Option("--params", help="the params file")]


@app.command()
def serve(params: ParamsOption = Path("params.yaml")) -> None:
    """Register both deployments and run them from this machine when due (Ctrl-C stops)."""
    serve_deployments(params)


@app.command()
def deploy(
    pool: Annotated[str, typer.Option(help="the work pool whose workers run them")] = "medcls",
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Deploy both flows to a work pool (`prefect worker start --pool NAME` runs them)."""
    for deployment_id in deploy_to_pool(params, pool):
        print(f"deployed {deployment_id} to work pool {pool}")


if __name__ == "__main__":
    app()
