"""Grad-CAM heat maps: where in the image the network found the evidence for its label.

Selvaraju et al. 2017: the gradients of the class's logit with respect to the last convolutional
features, averaged per channel, weight those features; the positive part, scaled to 0-1 and laid
over the image, shows what drove the prediction.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from medcls.model import FEATURES_LAYER, LOGITS_LAYER

VIEW_SIZE = 224  # overlays are enlarged to at least this many pixels per side, for a person to read


def grad_cam(model, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """One N x S x S map in 0-1 per image, for the class given per image."""
    import tensorflow as tf

    batch = tf.convert_to_tensor(images, tf.float32)
    with tf.GradientTape() as tape:
        features, logits = _explainer(model)(batch, training=False)
        score = tf.gather(logits, tf.convert_to_tensor(classes, tf.int32), axis=1, batch_dims=1)
    gradients = tape.gradient(score, features)
    weights = tf.reduce_mean(tf.cast(gradients, tf.float32), axis=(1, 2), keepdims=True)
    maps = tf.nn.relu(tf.reduce_sum(weights * tf.cast(features, tf.float32), axis=-1)).numpy()
    peaks = maps.max(axis=(1, 2), keepdims=True)
    maps = np.divide(maps, peaks, out=np.zeros_like(maps), where=peaks > 0)
    side = images.shape[1]
    return np.stack([cv2.resize(m, (side, side), interpolation=cv2.INTER_LINEAR) for m in maps])


@functools.lru_cache(maxsize=2)
def _explainer(model):
    """The model with its last features as a second output: built once per model, not per batch."""
    import keras

    outputs = [model.get_layer(FEATURES_LAYER).output, model.get_layer(LOGITS_LAYER).output]
    return keras.Model(model.inputs, outputs)


def overlay(image: np.ndarray, heat: np.ndarray, opacity: float = 0.4) -> np.ndarray:
    """The image (S x S x C uint8, as the model saw it) with the map in colour over it, as BGR
    enlarged to at least VIEW_SIZE pixels per side."""
    side = max(VIEW_SIZE, image.shape[0])
    picture = cv2.resize(image, (side, side), interpolation=cv2.INTER_CUBIC)
    picture = cv2.cvtColor(picture, cv2.COLOR_GRAY2BGR if picture.ndim == 2 else cv2.COLOR_RGB2BGR)
    heat = cv2.resize(heat, (side, side), interpolation=cv2.INTER_LINEAR)
    colours = cv2.applyColorMap(np.uint8(np.clip(heat, 0, 1) * 255), cv2.COLORMAP_JET)
    return cv2.addWeighted(colours, opacity, picture, 1 - opacity, 0)


def encode_png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise ValueError("PNG encoding failed")
    return data.tobytes()
