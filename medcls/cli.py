"""`medcls`: the command line (Typer + Rich). Each command runs one pipeline step (medcls.pipeline)
and prints what it did; any error a user can fix is one `medcls: error: ...` line and exit status 1.
On a terminal, long steps show progress bars; elsewhere (DVC, Prefect, CI) a log line now and then.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from medcls.errors import MedclsError

app = typer.Typer(
    name="medcls",
    help="Label and classify medical images: a reproducible, scheduled pipeline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
review_app = typer.Typer(help="The labelled pool: doctors' reviews back into training.", no_args_is_help=True)
app.add_typer(review_app, name="review")


def main(argv: Sequence[str] | None = None) -> int:
    from medcls.support.progress import LogReporter, TerminalReporter, reporting

    try:
        with reporting(TerminalReporter() if sys.stderr.isatty() else LogReporter()):
            app(args=list(argv) if argv is not None else None, prog_name="medcls")
    except MedclsError as exc:
        print(f"medcls: error: {exc}", file=sys.stderr)
        return 1
    except SystemExit as done:  # Typer ends every run so: 0, 2 for a usage error, 130 when interrupted
        return done.code if isinstance(done.code, int) else int(done.code is not None)
    return 0


@app.callback()
def _options(
    context: typer.Context,
    params: Annotated[Path, typer.Option("--params", help="the params file")] = Path("params.yaml"),
) -> None:
    context.obj = params


def _project(context: typer.Context):
    from medcls import pipeline

    return pipeline.open_project(context.obj)


@app.command()
def ingest(context: typer.Context) -> None:
    """Copy data.source into data/raw with a manifest."""
    from medcls import pipeline

    r = pipeline.ingest(_project(context))
    _say(
        f"ingested {r.images} images of {len(r.class_names)} classes into {r.raw_dir}; "
        f"{r.quarantined} quarantined, {r.duplicates} duplicates stored once"
    )


@app.command()
def validate(context: typer.Context) -> None:
    """Check data/raw with the Great Expectations suite."""
    from medcls import pipeline
    from medcls.catalog import ValidationReports

    report = pipeline.validate(_project(context))
    warnings = "".join(f"; WARNING {o.check.description}: {o.unexpected} rows" for o in report.warnings)
    where = ValidationReports(report.report_dir).report
    _say(f"validation passed ({len(report.outcomes)} expectations){warnings}; see {where}")


@app.command()
def preprocess(context: typer.Context) -> None:
    """Prepare data/raw into arrays in data/processed."""
    from medcls import pipeline

    r = pipeline.preprocess(_project(context))
    shape = f"{r.contract['preprocess']['image_size']}px x{r.contract['preprocess']['channels']}"
    _say(f"preprocessed {r.counts} at {shape} into {r.processed_dir}")


@app.command()
def train(context: typer.Context) -> None:
    """Train the classifier (one MLflow run)."""
    from medcls import pipeline

    r = pipeline.train(_project(context))
    settings = ", ".join(f"{key.removeprefix('resolved.train.')} {value}" for key, value in r.resolved.items())
    _say(
        f"trained ({settings}) {r.epochs_run} epochs (best {r.best_epoch + 1}) in {r.seconds:.0f} s, "
        f"{r.images_per_second:.0f} images/s on {r.device}; MLflow run {r.run_id}"
    )


@app.command()
def evaluate(context: typer.Context) -> None:
    """Write reports/metrics.json and plots."""
    from medcls import pipeline

    r = pipeline.evaluate(_project(context))
    val, test = r.metrics["val"], r.metrics["test"]
    _say(
        f"test AUC {test['auc']:.4f} ACC {test['acc']:.4f} (val AUC {val['auc']:.4f} ACC {val['acc']:.4f})"
        f" -> {r.metrics_path}"
    )
    _say(f"{r.auto_labels} -> {r.trust_dir}")


@app.command()
def register(context: typer.Context) -> None:
    """Register the model; promote it if it beats production."""
    from medcls import pipeline

    r = pipeline.register(_project(context))
    serving = f"production is v{r.production_version}" if r.production_version else "no version is in production"
    _say(f"registered {r.model_name} v{r.version}: {r.reason}; {serving}")
    _say(f"v{r.version}: {r.auto_labels}")


@app.command()
def score(
    context: typer.Context,
    inbox: Annotated[Path | None, typer.Option(help="folder of new images (default: score.inbox)")] = None,
    output: Annotated[Path | None, typer.Option(help="results folder (default: score.output_dir)")] = None,
) -> None:
    """Label the inbox with the production model."""
    from medcls import pipeline

    result = pipeline.score(_project(context), inbox, output)
    _say(f"{result.summary()} -> {result.predictions_path}")


@app.command("demo-inbox")
def demo_inbox(
    context: typer.Context,
    count: Annotated[int | None, typer.Option(help="how many (default: score.demo_images)")] = None,
) -> None:
    """Copy held-out test images into the inbox."""
    from medcls import pipeline

    copied = pipeline.demo_inbox(_project(context), count)
    _say(f"copied {len(copied)} test images into {copied[0].parent if copied else 'the inbox'}")


@app.command()
def promote(
    context: typer.Context,
    version: str,
    reason: Annotated[str, typer.Option(help="why, recorded on the version")] = "promoted by hand",
) -> None:
    """Move the production alias to a model version."""
    from medcls import pipeline

    project = _project(context)
    previous = pipeline.promote(project, version, reason)
    name = project.params.registry.model_name
    _say(f"{name}: production is now v{version} (was {'v' + previous if previous else 'none'})")


@app.command()
def rollback(
    context: typer.Context,
    reason: Annotated[str, typer.Option(help="why, recorded on the version")] = "rolled back by hand",
) -> None:
    """Move production back to the previous version."""
    from medcls import pipeline

    project = _project(context)
    _say(f"{project.params.registry.model_name}: production rolled back to v{pipeline.rollback(project, reason)}")


@app.command()
def checkout(context: typer.Context, version: str) -> None:
    """Bring back a registered version's data and model (from the DVC cache or remote)."""
    from medcls import pipeline

    project = _project(context)
    r = pipeline.checkout(project, version)
    restored = ", ".join(f"{output} ({digest})" for output, digest in r.restored.items())
    _say(
        f"{project.params.registry.model_name} v{r.version}: restored {restored}; dvc.lock is now the one it was "
        f"built from (`dvc status` shows how the workspace differs from params.yaml and the code)"
    )


@app.command()
def models(context: typer.Context) -> None:
    """List registered versions and which one is in production."""
    from medcls import pipeline

    project = _project(context)
    versions = pipeline.models(project)
    if not versions:
        _say(f"no versions of '{project.params.registry.model_name}' registered yet")
        return
    rows = [
        (v.version, _figure(v.val_auc), _figure(v.test_auc), v.created, v.run_id, v.auto_labels,
         "production" if v.production else "")
        for v in versions
    ]  # fmt: skip
    columns = ("version", "val AUC", "test AUC", "created (UTC)", "run", "auto labels", "")
    _table(project.params.registry.model_name, columns, rows)


@review_app.command("init")
def review_init(context: typer.Context) -> None:
    """Create the empty labelled pool data/reviewed (a DVC stage)."""
    from medcls import pipeline

    _say(f"labelled pool: {pipeline.review_init(_project(context))}")


@review_app.command("import")
def review_import(
    context: typer.Context,
    file: Annotated[Path, typer.Argument(help="the edited review_queue.csv, or a Label Studio JSON export")],
) -> None:
    """Add reviewed labels to the labelled pool."""
    from medcls import pipeline

    r = pipeline.review_import(_project(context), file)
    held = f"; {r.unchanged} already in the pool as they are" if r.unchanged else ""
    left = f"; {r.skipped} rows skipped, see {r.report}" if r.skipped else ""
    _say(
        f"added {r.added} reviewed images ({r.corrected} corrected) and {r.auto_added} auto labels to {r.pool_dir} "
        f"({r.total} in all){held}{left}; `dvc repro` records the new data version and retrains on it"
    )
    for verdict in r.audits:
        _say(f"audits: {verdict.describe()}")


@app.command()
def audit(context: typer.Context) -> None:
    """Flag likely mislabelled training images (cleanlab) into the review queue."""
    from medcls import pipeline

    r = pipeline.audit(_project(context))
    _say(f"audited {r.audited} training labels: {r.flagged} likely wrong -> {r.audit_path} (and the review queue)")


@app.command()
def summary(context: typer.Context) -> None:
    """Where to find the metrics, runs and predictions."""
    from medcls import pipeline

    project = _project(context)
    rows = [(line.what, line.where, line.detail) for line in pipeline.summary(project)]
    _table(f"medcls results (data: {project.params.data.source})", ("", "where", "how to look"), rows)


@app.command()
def preset(
    context: typer.Context,
    name: Annotated[str | None, typer.Argument(help="a preset's name, or a preset file; none lists them")] = None,
) -> None:
    """Write a preset (an overlay of the defaults) into params.yaml, or list the presets."""
    from medcls import pipeline

    if name is None:
        _table("presets (medcls preset NAME)", ("name", "for"), list(pipeline.presets(context.obj).items()))
        return
    changed = pipeline.apply_preset(context.obj, name)
    rows = [(key, _value(old), _value(new)) for key, (old, new) in changed.items()]
    _table(f"{context.obj}: preset {name}, {len(rows)} values changed", ("key", "was", "now"), rows)


@app.command()
def serve(context: typer.Context) -> None:
    """Run the Prefect deployments on their schedules (hands over to `python -m flows serve`)."""
    _hand_over_to_flows(["serve", "--params", str(context.obj)])


@app.command()
def deploy(
    context: typer.Context,
    pool: Annotated[str, typer.Option(help="the Prefect work pool that runs them")] = "medcls",
) -> None:
    """Deploy the scheduled flows to a work pool (hands over to `python -m flows deploy`)."""
    _hand_over_to_flows(["deploy", "--pool", pool, "--params", str(context.obj)])


def _hand_over_to_flows(arguments: list[str]) -> None:
    """The orchestration layer's own command line, in this process's place: domain code never
    imports the flows."""
    command = [sys.executable, "-m", "flows", *arguments]
    sys.stdout.flush()
    os.execv(command[0], command)


def _say(message: str) -> None:
    print(message)


def _table(title: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """A table on standard output; as wide as its content when not on a terminal (for pipes)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(*columns, title=Text(title), title_justify="left", box=None, pad_edge=False)
    for row in rows:
        table.add_row(*(Text(str(cell)) for cell in row))  # as text: "[a, b]" is not markup
    Console(width=None if sys.stdout.isatty() else 200, highlight=False).print(table)


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _value(value: object) -> str:
    return "-" if value is None else str(value)


if __name__ == "__main__":
    sys.exit(main())
