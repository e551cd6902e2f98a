"""OpenCV preprocessing: fixed-size uint8 arrays from any input, the same at training and scoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medcls.config import DataConfig, PreprocessConfig, SyntheticConfig
from medcls.data.ingest import ingest_data
from medcls.data.manifest import load_manifest
from medcls.data.preprocess import (
    load_contract,
    load_split,
    prepare_files,
    prepare_image,
    preprocess_data,
    resolve_image_size,
)

GRAY = PreprocessConfig(image_size=16, channels=1)


def _gradient(height: int, width: int) -> np.ndarray:
    return np.linspace(0, 255, height * width).reshape(height, width).astype(np.uint8)


@pytest.mark.parametrize(
    ("pixels", "channels"),
    [
        (_gradient(40, 30), 1),
        (_gradient(40, 30), 3),
        (np.dstack([_gradient(20, 50)] * 3), 1),
        (np.dstack([_gradient(20, 50)] * 3), 3),
        (_gradient(64, 64).astype(np.uint16) * 257, 1),
    ],
)
def test_any_input_becomes_fixed_size_uint8(pixels: np.ndarray, channels: int):
    image = prepare_image(pixels, PreprocessConfig(image_size=16, channels=channels))
    assert image.shape == (16, 16, channels)
    assert image.dtype == np.uint8


def test_pad_keeps_aspect_and_stretch_fills():
    wide = np.full((10, 40), 200, np.uint8)
    settings = {"image_size": 20, "channels": 1, "clahe": False, "normalize": "none"}
    padded = prepare_image(wide, PreprocessConfig(resize="pad", **settings))[:, :, 0]
    assert (padded[0] == 0).all() and (padded[10] == 200).all()  # black bars above and below
    stretched = prepare_image(wide, PreprocessConfig(resize="stretch", **settings))[:, :, 0]
    assert (stretched == 200).all()


def test_percentile_stretch_removes_exposure_differences():
    dim = (_gradient(32, 32) // 4 + 10).astype(np.uint8)
    bright = (_gradient(32, 32) // 4 + 150).astype(np.uint8)
    settings = PreprocessConfig(image_size=32, channels=1, clahe=False)
    assert np.abs(prepare_image(dim, settings).astype(int) - prepare_image(bright, settings)).max() <= 2
    assert prepare_image(np.full((8, 8), 77, np.uint8), settings).max() == 0  # constant: nothing to stretch


def test_clahe_and_denoise_change_the_image():
    noisy = np.random.default_rng(0).integers(90, 110, (32, 32)).astype(np.uint8)
    plain = PreprocessConfig(image_size=32, channels=1, clahe=False, normalize="none")
    assert not np.array_equal(
        prepare_image(noisy, plain), prepare_image(noisy, plain.model_copy(update={"clahe": True}))
    )
    denoised = prepare_image(noisy, plain.model_copy(update={"denoise": True, "denoise_strength": 15.0}))
    assert denoised.std() < noisy.std()


@pytest.mark.parametrize("unresolved", [{"image_size": 16}, {"image_size": "auto", "channels": 1}])
def test_auto_size_and_channels_must_be_resolved(unresolved: dict):
    with pytest.raises(ValueError, match="needs a resolved size and channels"):
        prepare_image(_gradient(8, 8), PreprocessConfig(**unresolved))


def test_stage_writes_arrays_per_split_and_the_contract(tmp_path: Path):
    config = DataConfig(synthetic=SyntheticConfig(patients=40, images_per_patient=(1, 3), image_size=32))
    raw = ingest_data(config, tmp_path / "raw", seed=1, base_dir=tmp_path).raw_dir
    result = preprocess_data(PreprocessConfig(image_size=24), raw, tmp_path / "processed")
    contract = load_contract(result.processed_dir)
    assert contract["preprocess"]["channels"] == 1  # auto -> grayscale data
    manifest = load_manifest(raw)
    for split, count in result.counts.items():
        x, y, ids = load_split(result.processed_dir, split)
        assert x.shape == (count, 24, 24, 1) and x.dtype == np.uint8
        rows = manifest[manifest["split"] == split]
        assert ids.tolist() == rows["image_id"].tolist()
        assert [contract["class_names"][i] for i in y] == rows["label"].tolist()


def test_training_and_scoring_prepare_files_identically(tmp_path: Path):
    """No train/serve skew: the arrays training saw equal what scoring computes from the files."""
    config = DataConfig(synthetic=SyntheticConfig(patients=20, images_per_patient=(1, 2), image_size=48))
    raw = ingest_data(config, tmp_path / "raw", seed=1, base_dir=tmp_path).raw_dir
    processed = preprocess_data(
        PreprocessConfig(image_size=20, denoise=True), raw, tmp_path / "processed"
    ).processed_dir
    contract = PreprocessConfig(**load_contract(processed)["preprocess"])
    x, _, ids = load_split(processed, "train")
    files = load_manifest(raw).set_index("image_id").loc[ids, "file"]
    assert np.array_equal(prepare_files([raw / f for f in files], contract), x)


@pytest.mark.parametrize(("sides", "size"), [([224, 224, 180], 64), ([28, 28], 28), ([50, 51, 49], 48), ([10, 12], 16)])
def test_image_size_auto_is_the_images_own_within_bounds(sides: list[int], size: int):
    train = pd.DataFrame({"width": sides, "height": [side // 2 for side in sides]})
    assert resolve_image_size(PreprocessConfig(image_size="auto"), train).image_size == size
    assert resolve_image_size(PreprocessConfig(image_size=100), train).image_size == 100  # as written
