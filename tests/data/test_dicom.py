"""DICOM with pydicom's real test files: pixel handling, labels, and no patient data anywhere."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medcls.config import DataConfig, DicomConfig
from medcls.data.images import ImageLimits, UnreadableImage, image_id
from medcls.data.images.dicom import read_dicom
from medcls.data.ingest import ingest_data
from medcls.data.manifest import load_manifest
from medcls.errors import ConfigError, DataError

LIMITS = ImageLimits()


def _read(name: str, **config) -> list:
    return read_dicom(Path(get_testdata_file(name)).read_bytes(), DicomConfig(**config), LIMITS)


def _saved(dataset, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dataset.save_as(folder / name)
    return folder / name


def test_ct_is_rescaled_to_hounsfield_units_and_windowed():
    source = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    hounsfield = source.pixel_array * float(source.RescaleSlope) + float(source.RescaleIntercept)
    full = _read("CT_small.dcm")[0].pixels  # no window in the file: the full HU range
    assert full.dtype == np.uint16 and full.shape == (128, 128)
    assert np.array_equal(full.argmax(), hounsfield.argmax()) and full.max() == 65535 and full.min() == 0
    soft_tissue = _read("CT_small.dcm", window=(40.0, 400.0))[0].pixels  # HU -160..240
    assert (soft_tissue[hounsfield < -160] == 0).all() and (soft_tissue[hounsfield > 240] == 65535).all()


def test_file_window_is_used_unless_told_otherwise():
    windowed = _read("MR_small.dcm")[0].pixels  # the file says center 600, width 1600
    full = _read("MR_small.dcm", window="none")[0].pixels
    assert not np.array_equal(windowed, full)
    assert full.min() == 0 and windowed.min() > 0  # darkest pixel (127) lies inside the window


def test_monochrome1_is_inverted_so_that_bright_means_dense(tmp_path: Path):
    dataset = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    dataset.PhotometricInterpretation = "MONOCHROME1"
    inverted = read_dicom(_saved(dataset, tmp_path, "m1.dcm").read_bytes(), DicomConfig(), LIMITS)[0].pixels
    assert np.array_equal(inverted, 65535 - _read("MR_small.dcm")[0].pixels)


def test_compressed_transfer_syntaxes_decode_to_the_same_pixels():
    reference = image_id(_read("MR_small.dcm")[0].pixels)
    for name in ("MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
                 "MR_small_bigendian.dcm", "MR_small_implicit.dcm"):  # fmt: skip
        assert image_id(_read(name)[0].pixels) == reference, name
    assert _read("JPEG2000.dcm")[0].pixels.shape == (1024, 256)
    assert _read("SC_rgb_jpeg_dcmtk.dcm")[0].pixels.shape == (100, 100, 3)  # YBR JPEG -> RGB


def test_multi_frame_first_or_all():
    assert len(_read("examples_ybr_color.dcm")) == 1
    frames = _read("examples_ybr_color.dcm", frames="all")
    assert len(frames) == 30 and [f.frame for f in frames] == list(range(30))
    assert frames[0].pixels.shape == (240, 320, 3)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("MR_truncated.dcm", "cannot decode DICOM pixel data (Explicit VR Little Endian"),
        ("rtplan.dcm", "DICOM without pixel data"),
        ("no_meta.dcm", "not a DICOM file"),
        ("badVR.dcm", "corrupt DICOM file"),
    ],
)
def test_unusable_dicom_says_why(name: str, reason: str):
    with pytest.raises(UnreadableImage, match=reason.replace("(", r"\(")):
        _read(name)


def test_oversized_dicom_is_refused_before_decoding():
    with pytest.raises(UnreadableImage, match=r"image too large \(320x240 px x 30 frames"):
        read_dicom(
            Path(get_testdata_file("examples_ybr_color.dcm")).read_bytes(),
            DicomConfig(frames="all"),
            ImageLimits(max_pixels=10**6),
        )


PHI = {
    "PatientName": "Doe^Jane",
    "PatientBirthDate": "19540317",
    "PatientAddress": "1 Main St",
    "OtherPatientIDs": "OTHER-ID-77123",
}


@pytest.fixture
def dicom_study(tmp_path: Path) -> Path:
    """Four real MR/CT images of two patients, carrying obvious patient data in their headers."""
    study = tmp_path / "study"
    for n, (name, patient) in enumerate([("MR_small.dcm", "PAT-001"), ("CT_small.dcm", "PAT-001"),
                                         ("JPEG2000.dcm", "PAT-002"), ("693_J2KI.dcm", "PAT-002")]):  # fmt: skip
        dataset = pydicom.dcmread(get_testdata_file(name))
        for key, value in PHI.items():
            setattr(dataset, key, value)
        dataset.PatientID = patient
        dataset.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{n + 1}"
        _saved(dataset, study / f"series{n % 2}", f"img{n}.dcm")
    return study


@pytest.mark.parametrize("key", ["SOPInstanceUID", "file"])
def test_dicom_source_labels_by_uid_or_file_and_keeps_no_patient_data(dicom_study, tmp_path, key, caplog, monkeypatch):
    monkeypatch.setenv("MEDCLS_PATIENT_SALT", "a secret of the hospital's")
    keys = [f"1.2.826.0.1.3680043.8.498.{n}" for n in range(1, 6)] if key == "SOPInstanceUID" else [
        "series0/img0.dcm", "series1/img1.dcm", "series0/img2.dcm", "series1/img3.dcm", "series0/gone.dcm"]  # fmt: skip
    labels = pd.DataFrame({key: keys, "label": ["mr", "ct", "nm", "mr", "mr"]})
    labels.to_csv(dicom_study / "labels.csv", index=False)
    with caplog.at_level(logging.DEBUG):
        result = ingest_data(DataConfig(source=f"dicom:{dicom_study}"), tmp_path / "raw", seed=1, base_dir=tmp_path)
    manifest = load_manifest(result.raw_dir)
    assert sorted(manifest["label"]) == ["ct", "mr", "mr", "nm"]
    assert manifest.groupby("patient_id")["origin"].count().tolist() == [2, 2]  # PatientID groups, hashed
    assert set(manifest["bit_depth"]) == {16}
    quarantine = pd.read_csv(result.raw_dir / "quarantine.csv")
    assert quarantine["reason"].tolist() == ["in labels.csv, not found"]

    written = b"".join(path.read_bytes() for path in result.raw_dir.rglob("*") if path.is_file())
    for value in [*PHI.values(), "PAT-001", "PAT-002"]:
        assert value.encode() not in written, f"{value} leaked into data/raw"
        assert value not in caplog.text, f"{value} leaked into the logs"
    assert not list(result.raw_dir.rglob("*.dcm"))  # pixels only: no DICOM header is copied


def test_dicom_source_needs_its_labels(tmp_path: Path):
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "a.dcm")
    with pytest.raises(ConfigError, match=r"data\.dicom\.labels: .*labels\.csv not found"):
        ingest_data(DataConfig(source=f"dicom:{tmp_path}"), tmp_path / "raw", seed=1, base_dir=tmp_path)


def test_real_patient_ids_need_a_secret_key(dicom_study, tmp_path, monkeypatch, caplog):
    """A `folder:` of DICOM files too: their PatientIDs are real identifiers."""
    monkeypatch.delenv("MEDCLS_PATIENT_SALT", raising=False)
    folder = tmp_path / "by-class"
    for number, path in enumerate(sorted(dicom_study.rglob("*.dcm"))):
        (folder / ("mr" if number % 2 else "ct")).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / ("mr" if number % 2 else "ct") / path.name)
    with pytest.raises(DataError, match="patient ids from a dicom would be hashed with the public default key"):
        ingest_data(DataConfig(source=f"folder:{folder}"), tmp_path / "refused", seed=1, base_dir=tmp_path)
    assert not (tmp_path / "refused").exists()
    with caplog.at_level(logging.WARNING):
        allowed = DataConfig(source=f"folder:{folder}", allow_default_salt=True)
        assert ingest_data(allowed, tmp_path / "public", seed=1, base_dir=tmp_path).images == 4
    assert "public default key" in caplog.text
    monkeypatch.setenv("MEDCLS_PATIENT_SALT", "one secret")
    one = load_manifest(
        ingest_data(DataConfig(source=f"folder:{folder}"), tmp_path / "a", seed=1, base_dir=tmp_path).raw_dir
    )
    monkeypatch.setenv("MEDCLS_PATIENT_SALT", "another secret")
    two = load_manifest(
        ingest_data(DataConfig(source=f"folder:{folder}"), tmp_path / "b", seed=1, base_dir=tmp_path).raw_dir
    )
    assert one["patient_id"].nunique() == 2 and set(one["patient_id"]).isdisjoint(set(two["patient_id"]))  # keyed
