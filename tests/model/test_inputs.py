"""The training input: acquisition-shift augmentation changes intensities, never shapes or range;
the batches without tf.data (the JAX and torch backends) carry the same augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from medcls.config import TrainConfig
from medcls.model import inputs
from medcls.model.inputs import acquisition_shift, acquisition_shift_arrays, augmentation, training_dataset

# acquisition_shift in both forms: TensorFlow's (in tf.data) and NumPy's (without tf.data)
SHIFTS = {
    "tf.data": acquisition_shift,
    "arrays": lambda images, cfg: acquisition_shift_arrays(np.asarray(images), cfg, np.random.default_rng(0)),
}


def _config(**augment) -> TrainConfig:
    none = {"rotation_degrees": 0.0, "shift_fraction": 0.0, "contrast": 0.0}
    return TrainConfig(batch_size=8, augment=none | augment)


def _gradient_images(count: int = 8, side: int = 16) -> np.ndarray:
    ramp = np.tile(np.linspace(0, 255, side, dtype=np.float32), (side, 1))
    return np.repeat(ramp[None, :, :, None], count, axis=0)


@pytest.fixture(params=list(SHIFTS))
def shift(request):
    if request.param == "tf.data" and not inputs.uses_tf_data():
        pytest.skip("tf.data runs under TensorFlow's backend only")
    return SHIFTS[request.param]


@pytest.fixture(params=[True, False], ids=["tf.data", "PyDataset"])
def tf_data(request, monkeypatch):
    """Either input pipeline: without tf.data is how JAX and torch train, and it runs under any backend."""
    if request.param and not inputs.uses_tf_data():
        pytest.skip("tf.data runs under TensorFlow's backend only")
    monkeypatch.setattr(inputs, "uses_tf_data", lambda: request.param)
    return request.param


def test_without_options_the_images_pass_unchanged(shift):
    images = _gradient_images()
    cfg = _config()
    out = shift(augmentation(cfg, seed=0)(images, training=True), cfg)
    np.testing.assert_allclose(np.asarray(out), images)


def test_gamma_bends_each_images_intensities_within_its_bounds(shift):
    images = _gradient_images(64)
    out = np.asarray(shift(images, _config(gamma=0.5)))
    middle = images[0, 0, 8, 0] / 255.0  # one mid-gray pixel per image
    lowest, highest = 255 * middle ** np.exp(0.5), 255 * middle ** np.exp(-0.5)
    assert (out[:, 0, 8, 0] >= lowest - 1e-3).all() and (out[:, 0, 8, 0] <= highest + 1e-3).all()
    assert out[:, 0, 8, 0].std() > 5  # a different curve per image
    assert out.min() >= 0 and out.max() <= 255.0 + 1e-3
    np.testing.assert_allclose(out[:, :, [0, -1]], images[:, :, [0, -1]], atol=1e-3)  # black and white stay


def test_noise_and_blur_change_pixels_but_not_shape_or_range(shift):
    images = _gradient_images(32)
    cfg = _config(noise=0.05, blur_sigma=1.5)
    out = np.asarray(shift(augmentation(cfg, seed=0)(images, training=True), cfg))
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 255
    assert np.abs(out - images).mean() > 1


def test_a_training_batch_carries_them(tf_data):
    x = _gradient_images(16).astype(np.uint8)
    cfg = _config(gamma=0.3, blur_sigma=1.0, noise=0.02)
    batch, labels, _ = next(iter(training_dataset(x, np.arange(16) % 2, 2, cfg, seed=0)))
    assert tuple(batch.shape) == (8, 16, 16, 1) and tuple(labels.shape) == (8, 2)
    assert float(np.asarray(batch).max()) <= 255


def test_without_tf_data_each_epoch_is_a_new_order_of_every_image_once():
    x = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1)
    batches = inputs.keras_batches(x, np.eye(10, dtype=np.float32), np.ones(10, np.float32), 4, 0, lambda i, _: i)

    def one_epoch():
        epoch = [batches[index][0].ravel() for index in range(len(batches))]
        batches.on_epoch_end()
        return np.concatenate(epoch)

    first, second = one_epoch(), one_epoch()
    assert len(batches) == 3 and sorted(first) == sorted(second) == list(range(10))
    assert list(first) != list(second)
    in_order = inputs.keras_batches(x, np.eye(10, dtype=np.float32), None, 4, 0, batches=5)
    assert len(in_order) == 5 and list(in_order[4][0].ravel()) == [4, 5, 6, 7]  # repeated, labels only


def test_a_network_trains_on_either_pipeline(tf_data):
    import keras

    x = np.concatenate([np.zeros((16, 8, 8, 1)), np.full((16, 8, 8, 1), 255.0)]).astype(np.uint8)
    y = np.repeat([0, 1], 16)
    cfg = _config(gamma=0.2, noise=0.01, quarter_turns=True)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
                              keras.layers.Dense(2, activation="softmax")])  # fmt: skip
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(training_dataset(x, y, 2, cfg, seed=0), epochs=5, shuffle=False, verbose=0)
    _, accuracy = model.evaluate(inputs.evaluation_dataset(x, y, 2, batch_size=8), verbose=0)
    assert accuracy == 1.0
