"""The shape of the package: imports flow one way, and the domain never depends on its drivers."""

from __future__ import annotations

import graphlib
import os

import grimp
import pytest

from medcls.config import SOURCE_SCHEMES
from medcls.data.sources import READERS
from tests.helpers import REPO


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("medcls", "flows", cache_dir=None)


def test_no_module_imports_itself_back_through_others(graph: grimp.ImportGraph):
    """Every import, lazy ones inside functions included: a cycle would name its modules here."""
    dependencies = {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}
    try:
        list(graphlib.TopologicalSorter(dependencies).static_order())
    except graphlib.CycleError as cycle:
        pytest.fail(f"import cycle: {' -> '.join(cycle.args[1])}")


def test_nothing_under_medcls_imports_the_flows_or_the_command_line(graph: grimp.ImportGraph):
    domain = {module for module in graph.modules if module.startswith("medcls")} - {"medcls.cli", "medcls.__main__"}
    for module in domain:
        imported = graph.find_modules_directly_imported_by(module)
        assert not {name for name in imported if name == "flows" or name.startswith("flows.")}, module
        assert "medcls.cli" not in imported, module


def test_the_flows_reach_the_domain_only_through_the_pipeline(graph: grimp.ImportGraph):
    for module in (module for module in graph.modules if module.startswith("flows")):
        domain = {name for name in graph.find_modules_directly_imported_by(module) if name.startswith("medcls")}
        assert domain <= {"medcls.pipeline", "medcls.errors"}, module


def test_the_import_contracts_hold(monkeypatch):
    """The layers and independence contracts in pyproject.toml ([tool.importlinter])."""
    from importlinter.cli import lint_imports

    monkeypatch.chdir(REPO)
    with open(os.devnull, "w") as quiet:
        monkeypatch.setattr("sys.stdout", quiet)
        assert lint_imports(config_filename=str(REPO / "pyproject.toml"), no_cache=True, no_logo=True) == 0


def test_every_source_scheme_has_its_reader():
    assert set(READERS) == set(SOURCE_SCHEMES)


def test_the_entry_points_import_no_tensorflow_before_the_runtime_is_set_up():
    """TensorFlow reads its settings (oneDNN kernels, log level) once, when it is imported: the
    command line, the flows and the pipeline leave that to the stages, after `setup_runtime`."""
    import subprocess
    import sys

    entry_points = "import medcls.cli, medcls.pipeline, flows.training, flows.scoring, flows.deployments"
    check = f"{entry_points}; import sys; print(sorted({{'tensorflow', 'keras'}} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
