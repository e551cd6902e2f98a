"""The training input: acquisition-shift augmentation changes intensities, never shapes or range."""

from __future__ import annotations

import numpy as np

from medcls.config import TrainConfig
from medcls.model.inputs import acquisition_shift, augmentation, training_dataset


def _config(**augment) -> TrainConfig:
    none = {"rotation_degrees": 0.0, "shift_fraction": 0.0, "contrast": 0.0}
    return TrainConfig(batch_size=8, augment=none | augment)


def _gradient_images(count: int = 8, side: int = 16) -> np.ndarray:
    ramp = np.tile(np.linspace(0, 255, side, dtype=np.float32), (side, 1))
    return np.repeat(ramp[None, :, :, None], count, axis=0)


def test_without_options_the_images_pass_unchanged():
    images = _gradient_images()
    cfg = _config()
    out = acquisition_shift(augmentation(cfg, seed=0)(images, training=True), cfg)
    np.testing.assert_allclose(np.asarray(out), images)


def test_gamma_bends_each_images_intensities_within_its_bounds():
    images = _gradient_images(64)
    out = np.asarray(acquisition_shift(images, _config(gamma=0.5)))
    middle = images[0, 0, 8, 0] / 255.0  # one mid-gray pixel per image
    lowest, highest = 255 * middle ** np.exp(0.5), 255 * middle ** np.exp(-0.5)
    assert (out[:, 0, 8, 0] >= lowest - 1e-3).all() and (out[:, 0, 8, 0] <= highest + 1e-3).all()
    assert out[:, 0, 8, 0].std() > 5  # a different curve per image
    assert out.min() >= 0 and out.max() <= 255.0 + 1e-3
    np.testing.assert_allclose(out[:, :, [0, -1]], images[:, :, [0, -1]], atol=1e-3)  # black and white stay


def test_noise_and_blur_change_pixels_but_not_shape_or_range():
    images = _gradient_images(32)
    cfg = _config(noise=0.05, blur_sigma=1.5)
    out = np.asarray(acquisition_shift(augmentation(cfg, seed=0)(images, training=True), cfg))
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 255
    assert np.abs(out - images).mean() > 1


def test_a_training_batch_carries_them():
    x = _gradient_images(16).astype(np.uint8)
    cfg = _config(gamma=0.3, blur_sigma=1.0, noise=0.02)
    batch, labels, _ = next(iter(training_dataset(x, np.arange(16) % 2, 2, cfg, seed=0)))
    assert tuple(batch.shape) == (8, 16, 16, 1) and tuple(labels.shape) == (8, 2)
    assert float(np.asarray(batch).max()) <= 255
