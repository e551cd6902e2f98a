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


def _redness(picture: np.ndarray) -> float:
    return float((picture[..., 2].astype(int) - picture[..., 0].astype(int)).mean())


def _evidence_at(row: int, column: int, side: int = 8) -> np.ndarray:
    heat = np.zeros((side, side), np.float32)
    heat[row, column] = 1.0
    return heat


def test_a_small_image_is_enlarged_for_a_person_to_read_its_pixels_kept():
    from medcls.scoring.heatmaps import overlay

    image = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    picture = overlay(image, _evidence_at(0, 0, 7), (0, 0, 28, 28), 28)
    assert picture.shape == (224, 224, 3) and picture.dtype == np.uint8
    assert _redness(picture[:16, :16]) > _redness(picture[-16:, -16:])  # red where the evidence is
    plain = overlay(image, np.zeros((7, 7), np.float32), (0, 0, 28, 28), 28)
    assert (plain[:8, :8] == plain[0, 0]).all()  # one image pixel is an 8 x 8 block, not a blur


def test_the_map_is_drawn_over_the_original_image_at_its_own_resolution_and_aspect():
    """A 16-bit 300 x 600 image the model saw padded into 32 x 32 (as 16 x 32, rows 8-23): the
    overlay has the image's own size, and evidence at the input's top right lands at the image's."""
    from medcls.config import PreprocessConfig
    from medcls.data.preprocess import content_box
    from medcls.scoring.heatmaps import overlay

    image = np.random.default_rng(1).integers(1000, 1200, (300, 600), dtype=np.uint16)  # raw detector values
    box = content_box(300, 600, PreprocessConfig(image_size=32, resize="pad"))
    assert box == (8, 0, 16, 32)
    picture = overlay(image, _evidence_at(2, 7), box, 32)  # map cell rows 8-11, columns 28-31 of the input
    assert picture.shape == (300, 600, 3)
    assert _redness(picture[:60, -100:]) > _redness(picture[:60, :100]) + 20
    assert _redness(picture[:60, -100:]) > _redness(picture[-60:, -100:]) + 20
    assert picture.mean() > 40  # windowed for display: raw 1000-1200 of 65535 would be black


def test_a_stretched_input_maps_onto_the_whole_image_and_a_large_one_is_shrunk_for_viewing():
    from medcls.config import PreprocessConfig
    from medcls.data.preprocess import content_box
    from medcls.scoring.heatmaps import MAX_VIEW_SIZE, overlay

    image = np.random.default_rng(2).integers(0, 256, (1000, 3000, 3), dtype=np.uint8)
    box = content_box(1000, 3000, PreprocessConfig(image_size=64, resize="stretch"))
    assert box == (0, 0, 64, 64)
    picture = overlay(image, _evidence_at(7, 0), box, 64)
    assert picture.shape == (round(1000 * MAX_VIEW_SIZE / 3000), MAX_VIEW_SIZE, 3)
    assert _redness(picture[-50:, :200]) > _redness(picture[:50, -200:]) + 20  # bottom left
