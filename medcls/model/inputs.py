"""The training input: tf.data pipelines of shuffled, class-weighted, augmented batches.

Augmentation runs here, in parallel with the training step, and is never part of the saved model.
"""

from __future__ import annotations

import math

import numpy as np

from medcls.config import TrainConfig


def training_dataset(x: np.ndarray, y: np.ndarray, n_classes: int, cfg: TrainConfig, seed: int):
    """Shuffled, class-weighted, augmented batches, prepared in parallel with the training step."""
    import tensorflow as tf

    weights = sample_weights(y, n_classes) if cfg.class_weights else np.ones(len(y), np.float32)
    augment = augmentation(cfg, seed)
    quarter_turns = cfg.augment.quarter_turns and x.shape[1] == x.shape[2]

    def augmented(images, labels, batch_weights):
        images = tf.cast(images, tf.float32)
        if quarter_turns:
            images = _random_quarter_turns(images)
        return acquisition_shift(augment(images, training=True), cfg), labels, batch_weights

    dataset = tf.data.Dataset.from_tensor_slices((x, np.eye(n_classes, dtype=np.float32)[y], weights))
    dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(cfg.batch_size)
    dataset = dataset.map(augmented, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def evaluation_dataset(x: np.ndarray, y: np.ndarray, n_classes: int, batch_size: int):
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((x, np.eye(n_classes, dtype=np.float32)[y]))
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def sample_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Balanced class weights: every class contributes equally to the loss."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    per_class = len(y) / (n_classes * np.maximum(counts, 1))
    return per_class[y].astype(np.float32)


def augmentation(cfg: TrainConfig, seed: int):
    """Training-only augmentation on 0-255 images, as Keras preprocessing layers."""
    import keras
    from keras import layers

    augment = cfg.augment
    steps = []
    if augment.horizontal_flip or augment.vertical_flip:
        mode = "horizontal_and_vertical" if augment.horizontal_flip and augment.vertical_flip else None
        mode = mode or ("horizontal" if augment.horizontal_flip else "vertical")
        steps.append(layers.RandomFlip(mode, seed=seed + 3))
    if augment.rotation_degrees:
        steps.append(layers.RandomRotation(augment.rotation_degrees / 360.0, fill_mode="reflect", seed=seed))
    if augment.shift_fraction:
        shift = augment.shift_fraction
        steps.append(layers.RandomTranslation(shift, shift, fill_mode="reflect", seed=seed + 1))
    if augment.zoom_fraction:
        steps.append(layers.RandomZoom(augment.zoom_fraction, fill_mode="reflect", seed=seed + 4))
    if augment.brightness:
        steps.append(layers.RandomBrightness(augment.brightness, value_range=(0, 255), seed=seed + 5))
    if augment.contrast:
        steps.append(layers.RandomContrast(augment.contrast, value_range=(0, 255), seed=seed + 2))
    if augment.blur_sigma:
        kernel = 2 * math.ceil(2 * augment.blur_sigma) + 1  # covers two sigmas each side
        steps.append(
            layers.RandomGaussianBlur(
                factor=(0.5, 0.5),
                kernel_size=kernel,
                sigma=(0.0, augment.blur_sigma),
                value_range=(0, 255),
                seed=seed + 6,
            )
        )
    return keras.Sequential(steps or [layers.Identity()], name="augmentation")


def acquisition_shift(images, cfg: TrainConfig):
    """What another device or site changes in an image (0-255 floats, N x S x S x C): its
    intensity response (a random gamma per image) and its noise (a random level per image).
    Blur is a Keras layer (`augmentation`)."""
    import tensorflow as tf

    augment, count = cfg.augment, tf.shape(images)[0]
    if augment.gamma:
        gamma = tf.exp(tf.random.uniform([count, 1, 1, 1], -augment.gamma, augment.gamma))
        images = 255.0 * tf.pow(images / 255.0, gamma)
    if augment.noise:
        level = tf.random.uniform([count, 1, 1, 1], 0.0, augment.noise * 255.0)
        images = tf.clip_by_value(images + level * tf.random.normal(tf.shape(images)), 0.0, 255.0)
    return images


def _random_quarter_turns(images):
    """Each image turned by 0, 90, 180 or 270 degrees: exact (no resampling), for data without an
    orientation such as cells under a microscope."""
    import tensorflow as tf

    turns = tf.random.uniform([tf.shape(images)[0]], 0, 4, dtype=tf.int32)
    candidates = tf.stack([tf.image.rot90(images, k) for k in range(4)], axis=1)  # N x 4 x S x S x C
    return tf.gather(candidates, turns, axis=1, batch_dims=1)
