"""A corpus of broken and unusual inputs: each is ingested or quarantined with its reason, the
rest of the data goes through, and the source is never modified."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medcls.config import DataConfig, ValidateConfig
from medcls.data.ingest import ingest_data
from medcls.data.manifest import load_manifest
from medcls.data.validate import validate_data
from medcls.errors import ValidationFailed
from medcls.support.files import read_json
from tests.helpers import tiny_params, write_params


def _pixels(seed: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)


def _encode(pixels: np.ndarray, suffix: str = ".png") -> bytes:
    ok, data = cv2.imencode(suffix, pixels)
    assert ok
    return data.tobytes()


def _huge_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A real 1x1 PNG whose header claims a giant size (decoding it would need ~10 GB)."""
    data = bytearray(_encode(np.zeros((1, 1), np.uint8)))
    header = b"IHDR" + struct.pack(">II", width, height) + bytes(data[24:29])
    data[12:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(header))
    return bytes(data)


def _pydicom_file(name: str) -> bytes:
    """One of the real DICOM files pydicom ships."""
    return Path(get_testdata_file(name)).read_bytes()


def _burned_in_dicom() -> bytes:
    dataset = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    dataset.BurnedInAnnotation = "YES"
    path = Path(tempfile.mkdtemp()) / "burned.dcm"
    dataset.save_as(path)
    return path.read_bytes()


def _wide_bmp(width: int = 2_097_160, height: int = 8) -> bytes:
    """A 5 KB BMP whose header says 2,097,160 x 8 px: within the pixel limit, beyond OpenCV's sides."""
    header = b"BM" + struct.pack("<IHHI", 54 + 5000, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 0, 5000, 2835, 2835, 0, 0)
    return header + info + bytes(5000)


def _wide_tiff(width: int = 2_097_160, height: int = 8) -> bytes:
    """A tiny TIFF whose tags declare an absurd width."""
    tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 8 + 2 + 12 * 8 + 4),
            (278, 4, height), (279, 4, 16)]  # fmt: skip
    ifd = struct.pack("<H", len(tags)) + b"".join(
        struct.pack("<HHII", tag, kind, 1, value) for tag, kind, value in tags
    )
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + bytes(16)


def _deflated_dicom(rows: int = 1200, columns: int = 1000) -> bytes:
    """3 KB on disk, 2.4 MB once pydicom inflates it (with data.max_file_megabytes at 1)."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    dataset = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    dataset.Rows, dataset.Columns = rows, columns
    dataset.PixelData = np.zeros((rows, columns), np.uint16).tobytes()
    dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    path = Path(tempfile.mkdtemp()) / "deflated.dcm"
    dataset.save_as(path, enforce_file_format=True)
    return path.read_bytes()


RADIANCE = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 10392 +X 10392\n" + bytes(4096)  # 108 Mpx, named .png
GOOD = {f"{label}/{label}-{n}.png": _encode(_pixels(10 * k + n)) for k, label in enumerate(("benign", "malignant"))
        for n in range(3)}  # fmt: skip
JPEG = _encode(_pixels(7, 64), ".jpg")
# file in the corpus -> expected quarantine reason (None: ingested).
BAD_INPUTS = {
    "benign/truncated.jpg": (JPEG[: len(JPEG) // 2], "not a decodable image"),
    "benign/truncated.png": (_encode(_pixels(8))[:60], "not a decodable image"),
    "benign/empty.png": (b"", "empty file"),
    "malignant/notes.png": (b"Findings: see report\n", "not a decodable image"),
    "malignant/actually-a-png.jpg": (_encode(_pixels(9)), None),
    "malignant/sixteen-bit.png": (_encode(_pixels(11).astype(np.uint16) * 257), None),
    "benign/with-alpha.png": (_encode(np.dstack([_pixels(112)] * 3 + [np.full((32, 32), 200, np.uint8)])), None),
    "benign/one-pixel.png": (_encode(np.full((1, 1), 90, np.uint8)), "too small (1x1 px"),
    "benign/bomb.png": (_huge_png(), "image too large (100000x100000 px"),
    "benign/wide.bmp": (_wide_bmp(), "image side too large (2097160x8 px"),
    "benign/wide.tif": (_wide_tiff(), "image side too large (2097160x8 px"),
    "benign/radiance.png": (RADIANCE, "not a decodable image: its bytes are no PNG, JPEG, BMP or TIFF"),
    "malignant/deflated.dcm": (_deflated_dicom(), "deflated DICOM inflates past 1 MB"),
    "malignant/huge-file.png": (b"\x89PNG" + bytes(1_200_000), "file too large (over 1 MB"),
    "benign/big.png": (_huge_png(12_000, 10_000), "image too large (12000x10000 px"),
    "unexpected/scan.png": (_encode(_pixels(13)), "label 'unexpected' is not one of data.class_names"),
    "benign/twin.png": (_encode(_pixels(14)), "same pixels as other files labelled ['benign', 'malignant']"),
    "malignant/twin.png": (_encode(_pixels(14)), "same pixels as other files labelled ['benign', 'malignant']"),
    "benign/copy-of-benign-0.png": (GOOD["benign/benign-0.png"], None),  # stored once, in duplicates.csv
    "malignant/blank.png": (_encode(np.zeros((32, 32), np.uint8)), "blank image (every pixel is 0)"),
    "malignant/corrupt.dcm": (_pydicom_file("MR_truncated.dcm"), "cannot decode DICOM pixel data"),
    "benign/report.dcm": (_pydicom_file("test-SR.dcm"), "DICOM without pixel data"),
    "benign/burned.dcm": (_burned_in_dicom(), "BurnedInAnnotation is YES"),
    "benign/readme.txt": (b"notes", "not an image file type (.txt)"),
    "benign/README": (b"notes", "no file extension and not a DICOM file"),
    ".ipynb_checkpoints/benign-0.png": (_encode(_pixels(15)), "in a hidden folder (.ipynb_checkpoints)"),
    "stray.png": (_encode(_pixels(16)), "not in a class folder"),
}  # fmt: skip
NON_UTF8_NAME = b"malignant/scan-\xff.png"  # a Latin-1 file name on a UTF-8 system


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(os.fsencode(path.relative_to(root)))
        if path.is_file() and not path.is_symlink():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus") / "source"
    for name, data in {**GOOD, **{k: v for k, (v, _) in BAD_INPUTS.items()}}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "benign" / "dangling.png").symlink_to(root / "benign" / "gone.png")
    Path(os.fsdecode(os.fsencode(root) + b"/" + NON_UTF8_NAME)).write_bytes(_encode(_pixels(17)))
    return root


def test_each_bad_input_is_quarantined_with_its_reason(corpus: Path, tmp_path: Path):
    before = _tree_digest(corpus)
    config = DataConfig(source=f"folder:{corpus}", class_names=["benign", "malignant"], max_file_megabytes=1)
    result = ingest_data(config, tmp_path / "raw", seed=1, base_dir=tmp_path)
    assert _tree_digest(corpus) == before, "the source must never be modified"

    quarantine = pd.read_csv(result.raw_dir / "quarantine.csv")
    reasons = dict(zip(quarantine["origin"], quarantine["reason"], strict=True))
    expected = {name: reason for name, (_, reason) in BAD_INPUTS.items() if reason}
    expected["benign/dangling.png"] = "broken link"
    for name, reason in expected.items():
        assert reason in reasons.get(name, "<not quarantined>"), name
    assert set(reasons) == set(expected)

    manifest = load_manifest(result.raw_dir).set_index("origin")
    accepted = [*GOOD, "malignant/actually-a-png.jpg", "malignant/sixteen-bit.png", "benign/with-alpha.png",
                "malignant/scan-\\xff.png"]  # fmt: skip
    assert sorted(manifest.index) == sorted(accepted)
    assert manifest.loc["malignant/sixteen-bit.png", "bit_depth"] == 16
    assert manifest.loc["benign/with-alpha.png", "channels"] == 1  # alpha dropped, gray kept gray
    assert manifest.loc["malignant/actually-a-png.jpg", "file"].endswith(".png")  # stored as what it is
    duplicates = pd.read_csv(result.raw_dir / "duplicates.csv")
    assert duplicates[["origin", "kept"]].values.tolist() == [["benign/copy-of-benign-0.png", "benign/benign-0.png"]]
    assert (result.images, result.quarantined, result.duplicates) == (len(accepted), len(expected), 1)


def test_an_empty_class_folder_stops_validation(tmp_path: Path):
    source = tmp_path / "source"
    for label in ("normal", "abnormal"):
        for n in range(40):  # each its own patient: enough to reach every split
            (source / label).mkdir(parents=True, exist_ok=True)
            (source / label / f"{n}.png").write_bytes(_encode(_pixels(100 * len(label) + n)))
    (source / "rare-finding").mkdir()
    result = ingest_data(DataConfig(source="folder:source"), tmp_path / "raw", seed=1, base_dir=tmp_path)
    assert result.class_names == ("abnormal", "normal", "rare-finding")
    with pytest.raises(ValidationFailed, match=r"enough images per class in each split \[.*classes\.images\]: 3 rows"):
        validate_data(ValidateConfig(min_images_per_class=1), result.raw_dir, tmp_path / "validation")


def test_csv_paths_escaping_the_manifest_folder_are_refused(tmp_path: Path):
    outside = tmp_path / "secret.png"
    outside.write_bytes(_encode(_pixels(30)))
    data = tmp_path / "study"
    (data / "img").mkdir(parents=True)
    for n in range(3):
        (data / "img" / f"{n}.png").write_bytes(_encode(_pixels(31 + n)))
    rows = [("img/0.png", "a"), ("img/1.png", "b"), ("img/2.png", "a"), ("../secret.png", "a"), (str(outside), "b"),
            ("img/missing.png", "a"), ("img/1.png", "")]  # fmt: skip
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(data / "manifest.csv", index=False)
    result = ingest_data(DataConfig(source="csv:study/manifest.csv"), tmp_path / "raw", seed=1, base_dir=tmp_path)
    reasons = pd.read_csv(result.raw_dir / "quarantine.csv").set_index("origin")["reason"].to_dict()
    assert reasons["../secret.png"] == reasons[str(outside)] == "path escapes the manifest's folder (refused)"
    assert reasons["img/missing.png"] == "file not found"
    assert reasons["img/1.png"] == "no label"
    assert result.images == 3


@pytest.mark.skipif(sys.platform != "linux", reason="uses setpriv to drop root's right to read anything")
def test_an_unreadable_file_is_quarantined(tmp_path: Path):
    """As a user who may not read one file (root reads everything, so ingest runs as nobody)."""
    project = Path(tempfile.mkdtemp(prefix="medcls-permissions-"))
    try:
        source = project / "source"
        for n in range(4):
            (source / "ok").mkdir(parents=True, exist_ok=True)
            (source / "ok" / f"{n}.png").write_bytes(_encode(_pixels(40 + n)))
        (source / "ok" / "locked.png").write_bytes(_encode(_pixels(50)))
        (source / "ok" / "locked.png").chmod(0)
        write_params(project, tiny_params(data={"source": "folder:source"}))
        for path in [project, *project.rglob("*")]:
            if path != source / "ok" / "locked.png":
                path.chmod(path.stat().st_mode | stat.S_IRWXO)
        command = [sys.executable, "-m", "medcls", "--params", str(project / "params.yaml"), "ingest"]
        if os.geteuid() == 0:
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        done = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        quarantine = pd.read_csv(project / "data" / "raw" / "quarantine.csv")
        assert quarantine.values.tolist() == [["ok/locked.png", "cannot read file: Permission denied"]]
        assert read_json(project / "data" / "raw" / "dataset.json")["images"] == 4
    finally:
        shutil.rmtree(project, ignore_errors=True)
