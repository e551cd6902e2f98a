"""The training input: shuffled, class-weighted, augmented batches.

With TensorFlow's backend, tf.data pipelines that augment in parallel with the training step; with
the others (JAX, torch: where TensorFlow may be absent, as on GPU machines without its CUDA build),
a Keras PyDataset that augments each batch before its step. Augmentation is never part of the
saved model.
"""

from __future__ import annotations

import math

import numpy as np

from medcls.config import TrainConfig


def training_dataset(
    x: np.ndarray, y: np.ndarray, n_classes: int, cfg: TrainConfig, seed: int, batches: int | None = None
):
    """Shuffled, class-weighted, augmented batches: one pass over `x`, or `batches` of them
    (the data repeated)."""
    import keras

    weights = sample_weights(y, n_classes) if cfg.class_weights else np.ones(len(y), np.float32)
    labels = np.eye(n_classes, dtype=np.float32)[y]
    augment = augmentation(cfg, seed)
    quarter_turns = cfg.augment.quarter_turns and x.shape[1] == x.shape[2]
    if not uses_tf_data():

        def augmented_arrays(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            if quarter_turns:
                images = np.stack([np.rot90(image, rng.integers(4)) for image in images])
            images = keras.ops.convert_to_numpy(augment(images.astype(np.float32), training=True))
            return acquisition_shift_arrays(images, cfg, rng)

        return keras_batches(x, labels, weights, cfg.batch_size, seed, augmented_arrays, batches)

    import tensorflow as tf

    def augmented(images, batch_labels, batch_weights):
        images = tf.cast(images, tf.float32)
        if quarter_turns:
            images = _random_quarter_turns(images)
        return acquisition_shift(augment(images, training=True), cfg), batch_labels, batch_weights

    dataset = tf.data.Dataset.from_tensor_slices((x, labels, weights))
    dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(cfg.batch_size)
    dataset = dataset.map(augmented, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    return dataset.repeat().take(batches) if batches else dataset


def evaluation_dataset(x: np.ndarray, y: np.ndarray, n_classes: int, batch_size: int):
    labels = np.eye(n_classes, dtype=np.float32)[y]
    if not uses_tf_data():
        return keras_batches(x, labels, None, batch_size, seed=0)
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, labels)).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def uses_tf_data() -> bool:
    """tf.data only under TensorFlow's backend: the other backends may run without TensorFlow."""
    import keras

    return keras.config.backend() == "tensorflow"


def keras_batches(x, labels, weights, batch_size: int, seed: int, transform=None, batches: int | None = None):
    """Batches as a Keras PyDataset, for the backends without tf.data: `transform(images, rng)`
    augments each (training), whose order is then reshuffled every epoch; without it the images
    pass in order, as float32. `batches`: that many (the data repeated), else one pass."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()  # one worker: the batches are made in order, between steps
            self.rng = np.random.default_rng(seed)
            self.per_pass = -(-len(x) // batch_size)
            self.on_epoch_end()

        def __len__(self) -> int:
            return batches or self.per_pass

        def __getitem__(self, index: int):
            chosen = self.order[(index % self.per_pass) * batch_size :][:batch_size]
            images = transform(x[chosen], self.rng) if transform else x[chosen].astype(np.float32)
            return (images, labels[chosen]) if weights is None else (images, labels[chosen], weights[chosen])

        def on_epoch_end(self) -> None:
            self.order = self.rng.permutation(len(x)) if transform else np.arange(len(x))

    return Batches()


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


def acquisition_shift_arrays(images: np.ndarray, cfg: TrainConfig, rng: np.random.Generator) -> np.ndarray:
    """`acquisition_shift` on NumPy arrays, for the backends without tf.data."""
    augment, per_image = cfg.augment, (len(images), 1, 1, 1)
    if augment.gamma:
        images = 255.0 * np.power(images / 255.0, np.exp(rng.uniform(-augment.gamma, augment.gamma, per_image)))
    if augment.noise:
        level = rng.uniform(0.0, augment.noise * 255.0, per_image)
        images = np.clip(images + level * rng.standard_normal(images.shape), 0.0, 255.0)
    return images.astype(np.float32)


def _random_quarter_turns(images):
    """Each image turned by 0, 90, 180 or 270 degrees: exact (no resampling), for data without an
    orientation such as cells under a microscope."""
    import tensorflow as tf

    turns = tf.random.uniform([tf.shape(images)[0]], 0, 4, dtype=tf.int32)
    candidates = tf.stack([tf.image.rot90(images, k) for k in range(4)], axis=1)  # N x 4 x S x S x C
    return tf.gather(candidates, turns, axis=1, batch_dims=1)
