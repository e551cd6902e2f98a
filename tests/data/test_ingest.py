"""Ingest: every source scheme, patient-level splits, duplicates kept once, bad files quarantined."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from medcls.config import DataConfig, SyntheticConfig
from medcls.data.ingest import ingest_data
from medcls.data.manifest import load_manifest
from medcls.errors import ConfigError, DataError
from medcls.support.files import read_json
from tests.helpers import SHARED_DATA, requires_shared_data

SYNTHETIC = DataConfig(synthetic=SyntheticConfig(patients=60, images_per_patient=(1, 4), image_size=32))
MANIFEST_COLUMNS = {"image_id", "file", "origin", "label", "patient_id", "split"} | {
    "width", "height", "channels", "bit_depth", "mean", "std", "min", "max"} | {
    "modality", "body_part", "photometric"}  # DICOM acquisition, empty for other images  # fmt: skip


def _image(seed: int, size: int = 20) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)


def _write(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), pixels)
    return path


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_synthetic_ingest_writes_manifest_and_splits_by_patient(tmp_path: Path):
    result = ingest_data(SYNTHETIC, tmp_path / "raw", seed=1, base_dir=tmp_path)
    manifest = load_manifest(result.raw_dir)
    assert set(manifest.columns) == MANIFEST_COLUMNS
    assert len(manifest) == result.images > 60
    assert set(manifest["split"]) == {"train", "val", "test", "calibration"}
    assert manifest.groupby("patient_id")["split"].nunique().max() == 1
    assert all((result.raw_dir / file).is_file() for file in manifest["file"])
    summary = read_json(result.raw_dir / "dataset.json")
    assert summary["class_names"] == sorted(summary["class_names"]) == list(result.class_names)
    assert summary["images"] == len(manifest)
    again = ingest_data(SYNTHETIC, tmp_path / "again", seed=1, base_dir=tmp_path)
    assert load_manifest(again.raw_dir)["image_id"].tolist() == manifest["image_id"].tolist()


def test_patient_ids_are_pseudonymous(tmp_path: Path):
    _write(tmp_path / "src" / "A" / "person12_scan1.png", _image(1))
    _write(tmp_path / "src" / "A" / "person12_scan2.png", _image(2))
    _write(tmp_path / "src" / "B" / "person13_scan1.png", _image(3))
    manifest = load_manifest(
        ingest_data(
            DataConfig(source="folder:src", patient_pattern=r"(person\d+)"), tmp_path / "raw", seed=1, base_dir=tmp_path
        ).raw_dir
    )
    assert manifest["patient_id"].nunique() == 2
    assert not manifest["patient_id"].str.contains("person").any()


def test_folder_with_bad_files_quarantines_and_keeps_the_source_intact(tmp_path: Path):
    source = tmp_path / "source"
    for offset, label in enumerate(("benign", "malignant")):
        for n in range(4):
            _write(source / label / f"{label}-{n}.png", _image(10 * offset + n))
    _write(source / "benign" / "copy-of-benign-0.png", _image(0))  # same pixels, same label
    _write(source / "benign" / "ambiguous.png", _image(999))
    _write(source / "malignant" / "ambiguous-too.png", _image(999))  # same pixels, other label
    (source / "benign" / "notes.txt").write_text("not an image")
    (source / "malignant" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (source / "malignant" / "empty.jpg").write_bytes(b"")
    before = _tree_digest(source)

    result = ingest_data(DataConfig(source="folder:source"), tmp_path / "raw", seed=1, base_dir=tmp_path)

    assert _tree_digest(source) == before
    assert (result.images, result.duplicates, result.quarantined) == (8, 1, 5)
    quarantine = pd.read_csv(result.raw_dir / "quarantine.csv")
    reasons = dict(zip(quarantine["origin"].map(lambda o: Path(o).name), quarantine["reason"], strict=True))
    assert "not an image file type" in reasons["notes.txt"]
    assert "not a decodable image" in reasons["broken.png"]
    assert reasons["empty.jpg"] == "empty file"
    assert "labelled ['benign', 'malignant']" in reasons["ambiguous.png"]
    duplicates = pd.read_csv(result.raw_dir / "duplicates.csv")
    assert Path(duplicates["origin"].iloc[0]).name == "copy-of-benign-0.png"


def test_folder_with_train_test_keeps_test_and_carves_val_by_patient(tmp_path: Path):
    source = tmp_path / "xrays"
    for split, patients in (("train", range(0, 40)), ("test", range(40, 50))):
        for patient in patients:
            for scan in range(2):
                label = "PNEUMONIA" if patient % 3 else "NORMAL"
                _write(source / split / label / f"person{patient}_bacteria_{scan}.jpeg", _image(patient * 10 + scan))
    _write(source / "NORMAL" / "misplaced.jpeg", _image(7))  # beside the split folders
    (source / "README.txt").write_text("chest X-rays")
    result = ingest_data(
        DataConfig(source="folder:xrays", val_fraction=0.2), tmp_path / "raw", seed=1, base_dir=tmp_path
    )
    reasons = pd.read_csv(result.raw_dir / "quarantine.csv").set_index("origin")["reason"].to_dict()
    assert reasons == {"NORMAL/misplaced.jpeg": "outside the train/val/test folders",
                       "README.txt": "outside the train/val/test folders"}  # fmt: skip
    manifest = load_manifest(result.raw_dir)
    assert (manifest["origin"].str.startswith("test/") == (manifest["split"] == "test")).all()
    assert manifest.groupby("patient_id")["split"].nunique().max() == 1
    val = manifest[manifest["split"] == "val"]
    assert 10 <= len(val) <= 22 and set(val["label"]) == {"NORMAL", "PNEUMONIA"}
    first = manifest.iloc[0]
    assert (result.raw_dir / first["file"]).read_bytes() == (source / first["origin"]).read_bytes()  # kept as is


def test_medmnist_npz_keeps_official_splits_and_names_classes(tmp_path: Path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 30), ("val", 8), ("test", 10)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 3).reshape(-1, 1)
    np.savez(tmp_path / "tiny.npz", **arrays)
    config = DataConfig(source="medmnist:tiny.npz", class_names=["basophil", "eosinophil", "erythroblast"])
    result = ingest_data(config, tmp_path / "raw", seed=1, base_dir=tmp_path)
    manifest = load_manifest(result.raw_dir)
    # The official val and test stay; calibration patients come out of train.
    counts = manifest.groupby("split").size().to_dict()
    assert counts["test"] == 10 and counts["val"] == 8 and counts["train"] + counts["calibration"] == 30
    assert counts["calibration"] > 0
    assert result.class_names == ("basophil", "eosinophil", "erythroblast")
    assert set(manifest["channels"]) == {3}


def test_missing_or_unusable_sources_fail_with_one_line(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        ingest_data(DataConfig(source="folder:nowhere"), tmp_path / "raw", seed=1, base_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        ingest_data(DataConfig(source="folder:empty"), tmp_path / "raw", seed=1, base_dir=tmp_path)
    (tmp_path / "fake.npz").write_text("not numpy")
    with pytest.raises(DataError, match=r"not a readable \.npz"):
        ingest_data(DataConfig(source="medmnist:fake.npz"), tmp_path / "raw", seed=1, base_dir=tmp_path)
    assert not (tmp_path / "raw").exists()  # nothing half-written


@requires_shared_data("chest_xray")
def test_chest_xray_folder_finds_the_known_flaws():
    """170 patients shared by the official train and test folders, and ~30 exact duplicates."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        result = ingest_data(
            DataConfig(source=f"folder:{SHARED_DATA / 'chest_xray'}"),
            Path(scratch) / "raw",
            seed=42,
            base_dir=Path(scratch),
        )
        manifest = load_manifest(result.raw_dir)
    shared = manifest.assign(official=manifest["split"].replace({"val": "train"}))
    assert (shared.groupby("patient_id")["official"].nunique() > 1).sum() == 170
    assert 25 <= result.duplicates <= 40 and result.quarantined == 0
    assert result.class_names == ("NORMAL", "PNEUMONIA")


def test_csv_manifest_gives_patients_and_splits(tmp_path: Path):
    rows = []
    for n in range(12):
        _write(tmp_path / "scans" / f"{n}.png", _image(200 + n))
        rows.append({"path": f"scans/{n}.png", "label": "a" if n % 2 else "b", "patient_id": f"p{n // 2}",
                     "split": ["train", "val", "test"][n // 2 % 3]})  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    config = DataConfig(source="csv:manifest.csv", allow_default_salt=True)  # made-up patients
    result = ingest_data(config, tmp_path / "raw", seed=1, base_dir=tmp_path)
    manifest = load_manifest(result.raw_dir).set_index("origin")
    assert manifest.loc["scans/5.png", "split"] == "test" and manifest.loc["scans/0.png", "split"] == "train"
    assert manifest["patient_id"].nunique() == 6
    assert manifest.loc["scans/4.png", "patient_id"] == manifest.loc["scans/5.png", "patient_id"]


def _leaky_folder(root: Path) -> None:
    """An official-style split where patient 0 has images in both train and test."""
    for split, patients in (("train", range(0, 12)), ("test", (0, 12, 13, 14))):
        for patient in patients:
            label = "NORMAL" if patient % 2 else "PNEUMONIA"
            _write(
                root / split / label / f"person{patient}_virus_{split}.jpeg", _image(1000 * (split == "test") + patient)
            )


def test_resplit_by_patient_removes_the_leakage_of_a_given_split(tmp_path: Path):
    _leaky_folder(tmp_path / "xrays")
    given = load_manifest(ingest_data(DataConfig(source="folder:xrays"), tmp_path / "given", seed=1,
                                      base_dir=tmp_path).raw_dir)  # fmt: skip
    assert (given.groupby("patient_id")["split"].nunique() > 1).sum() == 1
    config = DataConfig(source="folder:xrays", split="patient", val_fraction=0.2, test_fraction=0.2)
    resplit = load_manifest(ingest_data(config, tmp_path / "resplit", seed=1, base_dir=tmp_path).raw_dir)
    assert resplit.groupby("patient_id")["split"].nunique().max() == 1
    assert set(resplit["split"]) == {"train", "val", "test", "calibration"}


def test_patient_ids_depend_on_the_secret_salt(tmp_path: Path, monkeypatch):
    _write(tmp_path / "src" / "A" / "person1_a.png", _image(1))
    config = DataConfig(source="folder:src")
    default = load_manifest(ingest_data(config, tmp_path / "one", seed=1, base_dir=tmp_path).raw_dir)
    monkeypatch.setenv("MEDCLS_PATIENT_SALT", "a long secret kept in the team's vault")
    salted = ingest_data(config, tmp_path / "two", seed=1, base_dir=tmp_path)
    assert load_manifest(salted.raw_dir)["patient_id"][0] != default["patient_id"][0]
    assert read_json(salted.raw_dir / "dataset.json")["patient_salt"] == "MEDCLS_PATIENT_SALT"
