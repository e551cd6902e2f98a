"""The network is built from params: feature extractor + classifier head, own input handling."""

from __future__ import annotations

import numpy as np

from medcls.config import TrainConfig
from medcls.model import FEATURES_LAYER, build_classifier


def test_model_maps_raw_images_to_probabilities():
    model = build_classifier(TrainConfig(widths=[8, 16]), (28, 28, 3), 5, [0.5] * 3, [0.1] * 3)
    images = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 3)).astype(np.float32)
    probabilities = model.predict(images, verbose=0)
    assert probabilities.shape == (4, 5)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert model.get_layer("rescale") and model.get_layer("standardize")  # input handling inside


def test_widths_and_depth_come_from_params():
    small = build_classifier(TrainConfig(widths=[8, 16]), (32, 32, 1), 3, 0.5, 0.1)
    wide = build_classifier(TrainConfig(widths=[16, 32, 64]), (32, 32, 1), 3, 0.5, 0.1)
    deep = build_classifier(TrainConfig(widths=[8, 16], blocks_per_stage=2), (32, 32, 1), 3, 0.5, 0.1)
    assert small.count_params() < deep.count_params() < wide.count_params()
    # Each extra stage halves the feature map: 32 -> 16 -> 8.
    assert wide.get_layer(FEATURES_LAYER).output.shape[1:] == (8, 8, 64)
    assert small.get_layer("head_dropout").rate == TrainConfig().dropout
