"""Validation with Great Expectations: passes clean data, stops on broken data with a clear message."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from medcls.catalog import RawData
from medcls.config import DataConfig, SyntheticConfig, ValidateConfig
from medcls.data.ingest import ingest_data
from medcls.data.manifest import load_manifest
from medcls.data.validate import validate_data
from medcls.errors import ValidationFailed
from medcls.support.files import read_json, write_table


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("validate")
    config = DataConfig(synthetic=SyntheticConfig(patients=120, images_per_patient=(1, 3), image_size=32))
    return ingest_data(config, root / "raw", seed=2, base_dir=root).raw_dir


def _broken_copy(raw_dir: Path, tmp_path: Path, change) -> Path:
    """A copy of the data whose manifest `change` edits (images are shared through symlinks)."""
    copy = tmp_path / "raw"
    copy.mkdir()
    for item in raw_dir.iterdir():
        (copy / item.name).symlink_to(item)
    RawData(copy).manifest.unlink()
    write_table(RawData(copy).manifest, change(load_manifest(raw_dir)))
    return copy


def test_clean_data_passes_and_writes_reports(raw_dir: Path, tmp_path: Path):
    report = validate_data(ValidateConfig(min_images_per_class=1), raw_dir, tmp_path / "validation")
    assert report.success and not report.failures and not report.warnings
    assert len(report.outcomes) >= 14
    summary = read_json(tmp_path / "validation" / "summary.json")
    assert summary["success"] is True
    assert {e["check"]["expectation"] for e in summary["expectations"]} >= {
        "ExpectColumnValuesToBeInSet",
        "ExpectColumnValuesToBeUnique",
        "ExpectColumnValuesToBeBetween",
        "ExpectColumnValuesToNotBeNull",
    }
    assert "PASSED" in (tmp_path / "validation" / "report.md").read_text()
    docs = tmp_path / "validation" / "data_docs"
    assert (docs / "index.html").exists()
    pages = {page.name for page in (docs / "validations").rglob("*.html")}
    assert pages == {"medcls-manifest.html", "medcls-patients.html", "medcls-classes.html"}


def _leak_patient(manifest: pd.DataFrame) -> pd.DataFrame:
    """Move one image of a multi-image training patient to test: that patient is now in two splits."""
    counts = manifest[manifest["split"] == "train"].groupby("patient_id").size()
    patient = counts[counts > 1].index[0]
    first = manifest.index[manifest["patient_id"] == patient][0]
    manifest.loc[first, "split"] = "test"
    return manifest


def test_patient_leakage_fails_or_warns_by_param(raw_dir: Path, tmp_path: Path):
    leaky = _broken_copy(raw_dir, tmp_path, _leak_patient)
    with pytest.raises(ValidationFailed) as failure:
        validate_data(ValidateConfig(min_images_per_class=1, leakage="fail"), leaky, tmp_path / "strict")
    message = str(failure.value)
    assert "no patient in two splits (leakage)" in message
    assert "[ExpectColumnValuesToBeUnique on patients.patient_id]: 2 rows" in message
    assert "FAILED" in (tmp_path / "strict" / "report.md").read_text()
    report = validate_data(ValidateConfig(min_images_per_class=1, leakage="warn"), leaky, tmp_path / "lenient")
    assert report.success
    assert [w.check.description for w in report.warnings] == ["no patient in two splits (leakage)"]


def test_unexpected_labels_missing_files_and_flat_images_fail(raw_dir: Path, tmp_path: Path):
    def break_data(manifest: pd.DataFrame) -> pd.DataFrame:
        manifest.loc[0, "label"] = "unknown-finding"
        manifest.loc[1, "file"] = "images/missing.png"
        manifest.loc[2, "std"] = 0.0
        return manifest

    broken = _broken_copy(raw_dir, tmp_path, break_data)
    with pytest.raises(ValidationFailed) as failure:
        validate_data(ValidateConfig(min_images_per_class=1), broken, tmp_path / "validation")
    message = str(failure.value)
    for expected in ("labels are the expected ones", "every image file is present", "no blank or constant image"):
        assert f"{expected} [" in message
    assert message.count("1 rows") == 3
