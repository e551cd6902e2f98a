"""The network is built from params: feature extractor + classifier head, own input handling."""

from __future__ import annotations

import numpy as np
import pytest

from medcls.config import TrainConfig
from medcls.model.network import (
    FEATURES_LAYER,
    build_classifier,
    epoch_average_momentum,
    forward_flops,
    logits_model,
    set_batchnorm_momentum,
    with_temperature,
)


def test_model_maps_raw_images_to_probabilities():
    model = build_classifier(TrainConfig(widths=[8, 16]), (28, 28, 3), 5, [0.5] * 3, [0.1] * 3)
    images = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 3)).astype(np.float32)
    probabilities = model.predict(images, verbose=0)
    assert probabilities.shape == (4, 5)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_model_carries_its_input_handling():
    """0-255 pixels in; the model itself scales them to 0-1 and standardises with the data's statistics."""
    import keras

    mean, variance = [0.2, 0.5, 0.7], [0.01, 0.04, 0.09]
    model = build_classifier(TrainConfig(widths=[8]), (8, 8, 3), 2, mean, variance)
    standardised = keras.Model(model.inputs, model.get_layer("standardize").output)
    images = np.random.default_rng(2).integers(0, 256, (2, 8, 8, 3)).astype(np.float32)
    expected = (images / 255.0 - np.array(mean)) / np.sqrt(variance)
    np.testing.assert_allclose(standardised.predict(images, verbose=0), expected, rtol=1e-4, atol=1e-4)


def test_widths_and_depth_come_from_params():
    small = build_classifier(TrainConfig(widths=[8, 16]), (32, 32, 1), 3, 0.5, 0.1)
    wide = build_classifier(TrainConfig(widths=[16, 32, 64]), (32, 32, 1), 3, 0.5, 0.1)
    deep = build_classifier(TrainConfig(widths=[8, 16], blocks_per_stage=2), (32, 32, 1), 3, 0.5, 0.1)
    assert small.count_params() < deep.count_params() < wide.count_params()
    # Each extra stage halves the feature map: 32 -> 16 -> 8.
    assert wide.get_layer(FEATURES_LAYER).output.shape[1:] == (8, 8, 64)
    assert small.get_layer("head_dropout").rate == TrainConfig().dropout


def test_strided_stem_shrinks_the_input_before_the_stages():
    for stride, side in ((1, 16), (2, 8), (4, 4)):
        model = build_classifier(TrainConfig(widths=[8, 16], stem_stride=stride), (32, 32, 1), 2, 0.5, 0.1)
        assert model.get_layer(FEATURES_LAYER).output.shape[1:3] == (side, side)


def test_temperature_divides_the_logits_and_keeps_the_weights(tmp_path):
    import keras
    from scipy.special import softmax

    model = build_classifier(TrainConfig(widths=[8, 16]), (28, 28, 1), 3, 0.5, 0.1)
    images = np.random.default_rng(1).integers(0, 256, (5, 28, 28, 1)).astype(np.float32)
    logits = logits_model(model).predict(images, verbose=0)
    calibrated = with_temperature(model, 2.5)
    calibrated.save(tmp_path / "model.keras")  # built-in layers only: loads without custom objects
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), softmax(logits / 2.5, axis=1), atol=1e-6)
    np.testing.assert_allclose(model.predict(images, verbose=0), softmax(logits, axis=1), atol=1e-6)


def test_forward_flops_count_convolutions_and_dense_layers():
    model = build_classifier(TrainConfig(widths=[8]), (10, 10, 1), 2, 0.5, 0.1)
    stem = 2 * 9 * 1 * 8 * 100
    block = 2 * (2 * 9 * 8 * 8 * 100)  # two 3x3 convolutions, 8 -> 8 channels
    assert forward_flops(model) == stem + block + 2 * 8 * 2


def test_batchnorm_statistics_and_weights_average_over_about_one_epoch():
    assert epoch_average_momentum(4) == pytest.approx(0.9)  # tiny data: settle within a few steps
    assert epoch_average_momentum(50) == pytest.approx(0.98)
    assert epoch_average_momentum(5000) == pytest.approx(0.99)
    model = build_classifier(TrainConfig(widths=[8]), (16, 16, 1), 2, 0.5, 0.1)
    set_batchnorm_momentum(model, 0.98)
    assert {layer.momentum for layer in model.layers if "_bn" in layer.name} == {0.98}


def test_a_training_step_takes_an_odd_batch():
    """TensorFlow 2.21's oneDNN kernels abort the process on a 1x1 stride-2 convolution's gradient
    for an odd batch: the network must not contain one (a last batch of 19 images crashed training)."""
    import keras

    model = build_classifier(TrainConfig(widths=[8, 16]), (28, 28, 1), 4, 0.5, 0.1)
    assert not [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)
                and layer.kernel_size == (1, 1) and layer.strides != (1, 1)]  # fmt: skip
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    rng = np.random.default_rng(3)
    images, labels = rng.integers(0, 256, (19, 28, 28, 1)).astype(np.float32), np.eye(4)[rng.integers(0, 4, 19)]
    assert np.isfinite(model.train_on_batch(images, labels))


@pytest.mark.parametrize(("size", "stride"), [(28, 1), (40, 1), (44, 2), (64, 2)])
def test_stem_stride_auto_keeps_the_first_stage_near_32_px(size: int, stride: int):
    from medcls.model.network import resolve_stem_stride

    assert resolve_stem_stride(TrainConfig(stem_stride="auto"), size).stem_stride == stride
    assert resolve_stem_stride(TrainConfig(stem_stride=4), size).stem_stride == 4  # as written
