"""The command line: one readable error line, tables, and progress where nobody watches a terminal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from medcls.cli import main
from tests.helpers import REPO, tiny_params, write_params


def _medcls(*arguments: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "medcls", *arguments], capture_output=True, text=True, timeout=300, cwd=cwd
    )


@pytest.mark.parametrize(
    ("sections", "command", "message"),
    [
        ({"data": {"source": "dropbox:x"}}, "ingest", "unknown source scheme 'dropbox'"),
        ({"data": {"source": "folder:no/such/folder"}}, "ingest", "no/such/folder does not exist"),
        ({"train": {"epochs": -3}}, "train", "train.epochs: Input should be greater than 0 or 'auto' (got -3)"),
    ],
)
def test_cli_reports_bad_params_in_one_line(tmp_path: Path, sections: dict, command: str, message: str):
    path = write_params(tmp_path, tiny_params(**sections), complete=False)
    done = _medcls("--params", str(path), command)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("medcls: error: ")
    assert message in lines[0]


def test_usage_errors_and_help(capsys):
    assert main(["no-such-command"]) == 2
    assert "No such command" in capsys.readouterr().err
    assert main(["--help"]) == 0
    shown = capsys.readouterr().out
    commands = ["ingest", "validate", "preprocess", "train", "evaluate", "register", "score", "demo-inbox", "promote",
                "rollback", "models", "review", "audit", "serve", "deploy", "summary", "preset"]  # fmt: skip
    assert all(command in shown for command in commands)


def test_ingest_logs_its_progress_when_not_on_a_terminal(tmp_path: Path):
    path = write_params(tmp_path, tiny_params())
    done = _medcls("--params", str(path), "ingest")
    assert done.returncode == 0, done.stderr
    assert "medcls.support.progress: ingest: " in done.stderr and "files in" in done.stderr
    assert done.stdout.startswith("ingested ")


def test_models_and_summary_are_tables(trained_project):
    params = str(trained_project.paths.params)
    models = _medcls("--params", params, "models")
    assert models.returncode == 0, models.stderr
    header, first = models.stdout.splitlines()[1:3]
    assert header.split() == ["version", "val", "AUC", "test", "AUC", "created", "(UTC)", "run", "auto", "labels"]
    assert first.split()[0] == "1" and first.split()[-1] == "production"
    assert "none: no threshold certified" in models.stdout  # a tiny project has too few calibration images
    summary = _medcls("--params", params, "summary")
    assert summary.returncode == 0, summary.stderr
    rows = {line.split()[0]: line for line in summary.stdout.splitlines()[2:]}
    assert "reports/metrics.json" in rows["metrics"] and "test AUC" in rows["metrics"]
    assert f"{trained_project.params.registry.model_name} v1" in rows["production"]


def test_preset_lists_the_presets_and_writes_one(tmp_path: Path):
    (tmp_path / "params.yaml").write_bytes((REPO / "params.yaml").read_bytes())
    (tmp_path / "presets").symlink_to(REPO / "presets")
    listed = _medcls("preset", cwd=tmp_path)
    assert listed.returncode == 0 and {"bloodmnist", "chest_xray"} <= set(listed.stdout.split())
    applied = _medcls("preset", "chest_xray", cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert "data.source" in applied.stdout and "folder:../shared/data/chest_xray" in applied.stdout
    unknown = _medcls("preset", "nothing", cwd=tmp_path)
    assert unknown.returncode == 1 and unknown.stderr.startswith("medcls: error: ")
