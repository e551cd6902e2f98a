"""`medcls`: the command line. Each command runs one pipeline step and prints one summary line;
any error a user can fix is one `medcls: error: ...` line and exit status 1."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from medcls.errors import MedclsError


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        message = args.handler(args)
    except MedclsError as exc:
        print(f"medcls: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if message:
        print(message)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medcls", description="Label and classify medical images.")
    parser.add_argument("--params", default="params.yaml", type=Path, help="params file (default: params.yaml)")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, handler: Callable, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    command("ingest", _ingest, "copy data.source into data/raw with a manifest")
    command("validate", _validate, "check data/raw with the Great Expectations suite")
    command("preprocess", _preprocess, "prepare data/raw into arrays in data/processed")
    command("train", _train, "train the classifier (one MLflow run)")
    command("evaluate", _evaluate, "write reports/metrics.json and plots")
    command("register", _register, "register the model; promote it if it beats production")
    score = command("score", _score, "label the inbox with the production model")
    score.add_argument("--inbox", type=Path, help="folder of new images (default: score.inbox)")
    score.add_argument("--output", type=Path, help="results folder (default: score.output_dir)")
    demo = command("demo-inbox", _demo_inbox, "copy held-out test images into the inbox")
    demo.add_argument("--count", type=int, help="how many (default: score.demo_images)")
    promote = command("promote", _promote, "move the production alias to a model version")
    promote.add_argument("version")
    promote.add_argument("--reason", default="promoted by hand")
    rollback = command("rollback", _rollback, "move production back to the previous version")
    rollback.add_argument("--reason", default="rolled back by hand")
    command("models", _models, "list registered versions and which one is in production")
    review = commands.add_parser("review", help="the labelled pool: doctors' reviews back into training")
    actions = review.add_subparsers(required=True, metavar="ACTION")
    init = actions.add_parser("init", help="create the empty labelled pool data/reviewed (a DVC stage)")
    init.set_defaults(handler=_review_init)
    imported = actions.add_parser(
        "import", help="add reviewed labels (the edited review_queue.csv, or a Label Studio JSON export) to the pool"
    )
    imported.add_argument("file", type=Path)
    imported.set_defaults(handler=_review_import)
    command("audit", _audit, "flag likely mislabelled training images (cleanlab) into the review queue")
    command("serve", _serve, "run the Prefect deployments on their schedules (Ctrl-C stops)")
    command("summary", _summary, "where to find the metrics, runs and predictions")
    return parser


def _project(args: argparse.Namespace):
    from medcls.pipeline import open_project

    return open_project(args.params)


def _ingest(args: argparse.Namespace) -> str:
    from medcls.pipeline import ingest

    r = ingest(_project(args))
    return (
        f"ingested {r.images} images of {len(r.class_names)} classes into {r.raw_dir}; "
        f"{r.quarantined} quarantined, {r.duplicates} duplicates stored once"
    )


def _validate(args: argparse.Namespace) -> str:
    from medcls.pipeline import validate

    report = validate(_project(args))
    warnings = "".join(f"; WARNING {o.check.description}: {o.unexpected} rows" for o in report.warnings)
    return f"validation passed ({len(report.outcomes)} expectations){warnings}; see {report.report_dir / 'report.md'}"


def _preprocess(args: argparse.Namespace) -> str:
    from medcls.pipeline import preprocess

    r = preprocess(_project(args))
    shape = f"{r.contract['preprocess']['image_size']}px x{r.contract['preprocess']['channels']}"
    return f"preprocessed {r.counts} at {shape} into {r.processed_dir}"


def _train(args: argparse.Namespace) -> str:
    from medcls.pipeline import train

    r = train(_project(args))
    return (
        f"trained {r.epochs_run} epochs (best {r.best_epoch + 1}) in {r.seconds:.0f} s, "
        f"{r.images_per_second:.0f} images/s on {r.device}; MLflow run {r.run_id}"
    )


def _evaluate(args: argparse.Namespace) -> str:
    from medcls.pipeline import evaluate

    r = evaluate(_project(args))
    val, test = r.metrics["val"], r.metrics["test"]
    return (
        f"test AUC {test['auc']:.4f} ACC {test['acc']:.4f} (val AUC {val['auc']:.4f} ACC {val['acc']:.4f})"
        f" -> {r.metrics_path}"
    )


def _register(args: argparse.Namespace) -> str:
    from medcls.pipeline import register

    r = register(_project(args))
    return f"registered {r.model_name} v{r.version}: {r.reason}; production is v{r.production_version}"


def _score(args: argparse.Namespace) -> str:
    from medcls.pipeline import score

    result = score(_project(args), args.inbox, args.output)
    return f"{result.summary()} -> {result.predictions_path}"


def _demo_inbox(args: argparse.Namespace) -> str:
    from medcls.pipeline import demo_inbox

    copied = demo_inbox(_project(args), args.count)
    return f"copied {len(copied)} test images into {copied[0].parent if copied else 'the inbox'}"


def _promote(args: argparse.Namespace) -> str:
    from medcls.registry import promote

    project = _project(args)
    name = project.params.registry.model_name
    previous = promote(name, args.version, args.reason)
    return f"{name}: production is now v{args.version} (was {'v' + previous if previous else 'none'})"


def _rollback(args: argparse.Namespace) -> str:
    from medcls.registry import rollback

    name = _project(args).params.registry.model_name
    return f"{name}: production rolled back to v{rollback(name, args.reason)}"


def _models(args: argparse.Namespace) -> str:
    from medcls.registry import list_versions

    name = _project(args).params.registry.model_name
    lines = [f"{'version':>7}  {'val AUC':>7}  {'test AUC':>8}  {'created (UTC)':<25}  run"]
    for v in list_versions(name):
        marker = "  <- production" if v.production else ""
        lines.append(
            f"{v.version:>7}  {_fmt(v.val_auc):>7}  {_fmt(v.test_auc):>8}  {v.created:<25}  {v.run_id}{marker}"
        )
    return "\n".join(lines) if len(lines) > 1 else f"no versions of '{name}' registered yet"


def _review_init(args: argparse.Namespace) -> str:
    from medcls.pipeline import review_init

    return f"labelled pool: {review_init(_project(args))}"


def _review_import(args: argparse.Namespace) -> str:
    from medcls.pipeline import review_import

    r = review_import(_project(args), args.file)
    return (
        f"added {r.added} reviewed images ({r.corrected} corrected) and {r.auto_added} auto labels to {r.pool_dir} "
        f"({r.total} in all); `dvc repro` records the new data version and retrains on it"
    )


def _audit(args: argparse.Namespace) -> str:
    from medcls.pipeline import audit

    r = audit(_project(args))
    return f"audited {r.audited} training labels: {r.flagged} likely wrong -> {r.audit_path} (and the review queue)"


def _serve(args: argparse.Namespace) -> str:
    from flows.deployments import serve_deployments

    serve_deployments(args.params)
    return ""


def _summary(args: argparse.Namespace) -> str:
    from medcls.summary import describe_project

    return describe_project(_project(args))


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    sys.exit(main())
