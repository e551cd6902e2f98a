"""Patient-level splits that never move: a patient's split depends on its id and the fractions only."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from medcls.config import DataConfig
from medcls.data.ingest import ingest_data
from medcls.data.manifest import load_manifest
from medcls.data.splits import patient_point, split_by_patient


def test_patients_are_never_split_and_the_shares_follow_the_fractions():
    patients = pd.Series([f"p{i // 3}" for i in range(6000)])
    split = split_by_patient(patients, {"test": 0.2, "val": 0.1})
    assert split.groupby(patients).nunique().max() == 1
    shares = split.value_counts(normalize=True)
    assert shares["test"] == pytest.approx(0.2, abs=0.02) and shares["val"] == pytest.approx(0.1, abs=0.02)


def test_a_patients_split_ignores_every_other_patient():
    fractions = {"test": 0.15, "val": 0.15}
    before = split_by_patient(pd.Series([f"p{i}" for i in range(200)]), fractions)
    more = split_by_patient(pd.Series([f"p{i}" for i in range(1000)][::-1]), fractions)  # more, in another order
    assert more.iloc[::-1].reset_index(drop=True)[:200].tolist() == before.tolist()
    points = np.array([patient_point(f"p{i}") for i in range(20000)])
    assert points.min() >= 0 and points.max() < 1 and abs(points.mean() - 0.5) < 0.01  # spread evenly


def _scans(root: Path, patients: range, split: str | None = None) -> None:
    for patient in patients:
        label = "PNEUMONIA" if patient % 3 else "NORMAL"
        folder = root / split / label if split else root / label
        folder.mkdir(parents=True, exist_ok=True)
        for scan in range(2):
            pixels = np.random.default_rng(patient * 10 + scan).integers(0, 256, (20, 20), dtype=np.uint8)
            cv2.imwrite(str(folder / f"person{patient}_scan{scan}.png"), pixels)


@pytest.mark.parametrize("given", [False, True], ids=["split-by-medcls", "train-test-given"])
def test_adding_patients_moves_no_image_to_another_split(tmp_path: Path, given: bool):
    """The same folder ingested again with more patients: every image in both keeps its split."""
    source = tmp_path / "xrays"
    _scans(source, range(0, 60), "train" if given else None)
    if given:
        _scans(source, range(60, 75), "test")
    config = DataConfig(source="folder:xrays")
    first = load_manifest(ingest_data(config, tmp_path / "first", seed=1, base_dir=tmp_path).raw_dir)
    _scans(source, range(100, 160), "train" if given else None)
    if given:
        _scans(source, range(160, 170), "test")
    second = load_manifest(ingest_data(config, tmp_path / "second", seed=2, base_dir=tmp_path).raw_dir)
    both = first.merge(second, on="image_id", suffixes=("_first", "_second"))
    assert len(both) == len(first) == (150 if given else 120)
    assert (both["split_first"] != both["split_second"]).sum() == 0
    assert set(second["split"]) == {"train", "val", "test", "calibration"}
