"""Heat maps: the class activation map of the prediction's own forward pass is Grad-CAM."""

from __future__ import annotations

import numpy as np


def test_heat_maps_point_at_the_evidence():
    """Two feature channels, a blob in each; only the top-left one's channel counts for class 1."""
    from medcls.scoring.heatmaps import class_activation_maps

    features = np.zeros((1, 8, 8, 2), np.float32)
    features[0, :4, :4, 0] = 1.0  # evidence for class 1
    features[0, 4:, 4:, 1] = 1.0  # bright, but irrelevant to class 1
    kernel = np.array([[-1.0, 1.0], [0.0, 0.0]], np.float32)  # class 1 <- channel 0 only
    heat = class_activation_maps(features, kernel, np.array([1]))[0]
    assert heat[:4, :4].min() == 1.0 and heat[4:, 4:].max() == 0.0


def test_heat_maps_are_grad_cam_of_the_classifier():
    """The class activation map from the forward pass equals Grad-CAM computed with gradients."""
    import keras
    import tensorflow as tf

    from medcls.config import TrainConfig
    from medcls.model.network import FEATURES_LAYER, LOGITS_LAYER, build_classifier, logits_kernel, with_features
    from medcls.scoring.heatmaps import class_activation_maps

    model = build_classifier(TrainConfig(widths=[8, 16], dropout=0.5), (16, 16, 1), 3, [0.5], [0.05])
    images = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 1)).astype(np.float32)
    classes = np.array([0, 1, 2, 1])
    explainer = keras.Model(
        model.inputs, [model.get_layer(FEATURES_LAYER).output, model.get_layer(LOGITS_LAYER).output]
    )
    with tf.GradientTape() as tape:
        features, logits = explainer(tf.convert_to_tensor(images), training=False)
        score = tf.gather(logits, classes, axis=1, batch_dims=1)
    weights = tf.reduce_mean(tape.gradient(score, features), axis=(1, 2), keepdims=True)
    grad_cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1)).numpy()
    grad_cam /= np.maximum(grad_cam.max(axis=(1, 2), keepdims=True), 1e-12)

    _, forward_features = with_features(model).predict_on_batch(images)
    np.testing.assert_allclose(
        class_activation_maps(forward_features, logits_kernel(model), classes), grad_cam, atol=1e-5
    )


def test_overlays_are_enlarged_for_a_person_to_read():
    from medcls.scoring.heatmaps import overlay

    image = np.random.default_rng(0).integers(0, 256, (28, 28, 1), dtype=np.uint8)
    heat = np.zeros((7, 7), np.float32)
    heat[0, 0] = 1.0
    picture = overlay(image[:, :, 0], heat)
    assert picture.shape == (224, 224, 3) and picture.dtype == np.uint8
    corner, far = picture[:16, :16].astype(int), picture[-16:, -16:].astype(int)
    assert (corner[..., 2] - corner[..., 0]).mean() > (far[..., 2] - far[..., 0]).mean()  # red where the evidence is
