"""DVC from Python, on a tiny DVC project: stages in order, skipped when unchanged, the lock, restores."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from medcls.errors import PipelineBusy, StageFailed
from medcls.support.versioning import (
    data_version,
    locked_hashes,
    pipeline_stages,
    reproduce_stage,
    restore_outputs,
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Two stages: `double` reads source.txt and writes out/double.txt, `count` reads that."""
    from dvc.repo import Repo

    Repo.init(str(tmp_path), no_scm=True).close()
    (tmp_path / "source.txt").write_text("abc\n")
    (tmp_path / "double.py").write_text(
        "import pathlib\npathlib.Path('out').mkdir(exist_ok=True)\n"
        "pathlib.Path('out/double.txt').write_text(pathlib.Path('source.txt').read_text() * 2)\n"
    )
    (tmp_path / "count.py").write_text(
        "import pathlib\npathlib.Path('count.txt').write_text(str(len(pathlib.Path('out/double.txt').read_text())))\n"
    )
    stages = {
        "count": {"cmd": f"{sys.executable} count.py", "deps": ["count.py", "out/double.txt"], "outs": ["count.txt"]},
        "double": {"cmd": f"{sys.executable} double.py", "deps": ["double.py", "source.txt"], "outs": ["out"]},
    }
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    return tmp_path


def test_stages_come_in_dependency_order_and_run_only_when_changed(project: Path):
    assert pipeline_stages(project) == ["double", "count"]
    assert [reproduce_stage(project, stage) for stage in ("double", "count")] == [True, True]
    assert [reproduce_stage(project, stage) for stage in ("double", "count")] == [False, False]
    assert (project / "count.txt").read_text() == "8"
    (project / "source.txt").write_text("abcd\n")
    assert [reproduce_stage(project, stage) for stage in ("double", "count")] == [True, True]
    assert locked_hashes((project / "dvc.lock").read_text())["out"] == data_version(project / "out")


def test_a_second_run_meets_the_lock_and_says_so(project: Path):
    from dvc.repo import Repo

    with Repo(str(project)) as repo, repo.lock, pytest.raises(PipelineBusy, match="another DVC command"):
        reproduce_stage(project, "double")


def test_a_failing_stage_and_a_folder_without_dvc_are_one_line_errors(project: Path, tmp_path_factory):
    (project / "source.txt").unlink()
    with pytest.raises(StageFailed, match="DVC stage 'double' failed"):
        reproduce_stage(project, "double")
    with pytest.raises(StageFailed, match="is not a DVC project"):
        pipeline_stages(tmp_path_factory.mktemp("plain"))


def test_outputs_come_back_as_an_earlier_lock_records_them(project: Path):
    reproduce_stage(project, "double")
    earlier = (project / "dvc.lock").read_text()
    first = data_version(project / "out")
    (project / "source.txt").write_text("something else\n")
    reproduce_stage(project, "double")
    assert data_version(project / "out") != first
    assert restore_outputs(project, earlier, ["out"]) == {"out": first}
    assert data_version(project / "out") == first and (project / "dvc.lock").read_text() == earlier
    with pytest.raises(StageFailed, match="records no models"):
        restore_outputs(project, earlier, ["models"])
