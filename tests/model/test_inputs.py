"""The training input: augmentation changes intensities or orientation, never shapes or range, and
only in training; under the backends without tf.data (JAX, torch) the same layers run inside the
training step ahead of the network, which stays the model that is saved."""

from __future__ import annotations

import numpy as np
import pytest

from medcls.config import TrainConfig
from medcls.model import inputs
from medcls.model.inputs import augmentation, classifier_of, training_dataset, training_model


def _config(**augment) -> TrainConfig:
    none = {"rotation_degrees": 0.0, "shift_fraction": 0.0, "contrast": 0.0}
    return TrainConfig(batch_size=8, augment=none | augment)


def _gradient_images(count: int = 8, side: int = 16) -> np.ndarray:
    ramp = np.tile(np.linspace(0, 255, side, dtype=np.float32), (side, 1))
    return np.repeat(ramp[None, :, :, None], count, axis=0)


def _augmented(images: np.ndarray, **augment) -> np.ndarray:
    return np.asarray(augmentation(_config(**augment), seed=0)(images, training=True))


@pytest.fixture(params=[True, False], ids=["tf.data", "PyDataset"])
def tf_data(request, monkeypatch):
    """Either input pipeline: without tf.data is how JAX and torch train, and it runs under any backend."""
    if request.param and not inputs.uses_tf_data():
        pytest.skip("tf.data runs under TensorFlow's backend only")
    monkeypatch.setattr(inputs, "uses_tf_data", lambda: request.param)
    return request.param


def test_without_options_the_images_pass_unchanged():
    images = _gradient_images()
    np.testing.assert_allclose(_augmented(images), images)


def test_outside_training_nothing_changes():
    images = _gradient_images()
    everything = {"rotation_degrees": 10.0, "gamma": 0.5, "noise": 0.05, "blur_sigma": 1.0, "quarter_turns": True}
    out = augmentation(_config(**everything), seed=0)(images, training=False)  # as in validation, prediction
    np.testing.assert_array_equal(np.asarray(out), images)


def test_gamma_bends_each_images_intensities_within_its_bounds():
    images = _gradient_images(64)
    out = _augmented(images, gamma=0.5)
    middle = images[0, 0, 8, 0] / 255.0  # one mid-gray pixel per image
    lowest, highest = 255 * middle ** np.exp(0.5), 255 * middle ** np.exp(-0.5)
    assert (out[:, 0, 8, 0] >= lowest - 1e-3).all() and (out[:, 0, 8, 0] <= highest + 1e-3).all()
    assert out[:, 0, 8, 0].std() > 5  # a different curve per image
    assert out.min() >= 0 and out.max() <= 255.0 + 1e-3
    np.testing.assert_allclose(out[:, :, [0, -1]], images[:, :, [0, -1]], atol=1e-3)  # black and white stay


def test_noise_and_blur_change_pixels_but_not_shape_or_range():
    images = _gradient_images(32)
    out = _augmented(images, noise=0.05, blur_sigma=1.5)
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 255
    assert np.abs(out - images).mean() > 1


def test_quarter_turns_are_exact_and_all_four_occur():
    image = np.arange(3 * 5 * 5, dtype=np.float32).reshape(5, 5, 3)  # no symmetry
    out = _augmented(np.repeat(image[None], 32, axis=0), quarter_turns=True)
    turns = [next(k for k in range(4) if np.array_equal(turned, np.rot90(image, k))) for turned in out]
    assert sorted(set(turns)) == [0, 1, 2, 3]
    oblong = np.zeros((4, 5, 6, 1), np.float32) + np.arange(6, dtype=np.float32)[:, None]
    np.testing.assert_array_equal(_augmented(oblong, quarter_turns=True), oblong)  # only square images turn


def test_a_training_batch_is_augmented_by_the_pipeline_or_by_the_model(tf_data):
    x = _gradient_images(16).astype(np.uint8)
    cfg = _config(gamma=0.3, blur_sigma=1.0, noise=0.02)
    batch, labels, _ = next(iter(training_dataset(x, np.arange(16) % 2, 2, cfg, seed=0)))
    assert tuple(batch.shape) == (8, 16, 16, 1) and tuple(labels.shape) == (8, 2)
    assert float(np.asarray(batch).max()) <= 255
    changed = not np.allclose(np.asarray(batch), x[:8])  # the gradient images are all alike
    assert changed == tf_data


def test_without_tf_data_each_epoch_is_a_new_order_of_every_image_once():
    x = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1)
    batches = inputs.keras_batches(x, np.eye(10, dtype=np.float32), np.ones(10, np.float32), 4, 0, shuffle=True)

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
    network = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
                                keras.layers.Dense(2, activation="softmax")])  # fmt: skip
    model = training_model(network, cfg, seed=0)
    assert classifier_of(model) is network and (model is network) == tf_data
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(training_dataset(x, y, 2, cfg, seed=0), epochs=5, shuffle=False, verbose=0)
    _, accuracy = model.evaluate(inputs.evaluation_dataset(x, y, 2, batch_size=8), verbose=0)
    assert accuracy == 1.0
    np.testing.assert_array_equal(model.predict(x, verbose=0), network.predict(x, verbose=0))
