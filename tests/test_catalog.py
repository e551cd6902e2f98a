"""The catalog names every path: the stages write exactly there."""

from __future__ import annotations

from pathlib import Path

from medcls.catalog import (
    PREPARED_SPLITS,
    ModelFiles,
    Plots,
    ProcessedData,
    ProjectPaths,
    RawData,
    TrustFiles,
    ValidationReports,
)


def test_inbox_and_outputs_are_relative_to_the_project_unless_absolute(tmp_path: Path):
    paths = ProjectPaths.under(tmp_path, "incoming/scans", str(tmp_path.parent / "shared-outputs"))
    assert paths.inbox == tmp_path / "incoming" / "scans"
    assert paths.outputs == tmp_path.parent / "shared-outputs"
    assert paths.raw == tmp_path / "data" / "raw" and paths.params == tmp_path / "params.yaml"


def _files(layout) -> list[Path]:
    return [getattr(layout, name) for name, value in vars(type(layout)).items() if isinstance(value, property)]


def test_the_training_steps_write_what_the_catalog_names(trained_project):
    paths = trained_project.paths
    raw, processed = RawData(paths.raw), ProcessedData(paths.processed)
    expected = [*_files(raw), *_files(processed), *(processed.split(split) for split in PREPARED_SPLITS)]
    expected += [*_files(ModelFiles(paths.models)), *_files(ValidationReports(paths.validation))]
    expected += [*_files(Plots(paths.plots)), paths.metrics, paths.history, paths.registration]
    expected += _files(TrustFiles(paths.trust))
    assert [path for path in expected if not path.exists()] == []
    written = {path.relative_to(paths.root) for folder in (paths.raw, paths.processed, paths.models, paths.trust)
               for path in folder.iterdir()}  # fmt: skip
    named = {path.relative_to(paths.root) for path in expected}
    assert written <= named  # nothing in them that the catalog does not name
