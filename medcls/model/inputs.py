"""The training input: shuffled, class-weighted, augmented batches.

With TensorFlow's backend, tf.data pipelines that augment in parallel with the training step; with
the others (JAX, torch: where TensorFlow may be absent, as on GPU machines without its CUDA build),
a Keras PyDataset of plain batches, augmented inside the compiled training step by Keras layers
ahead of the network (`training_model`). The same layers both ways; augmentation is never part
of the saved model.
"""

from __future__ import annotations

import math

import numpy as np

from medcls.config import TrainConfig

TRAINING_MODEL = "training"  # the name of a model with the augmentation ahead of the network


def training_dataset(
    x: np.ndarray, y: np.ndarray, n_classes: int, cfg: TrainConfig, seed: int, batches: int | None = None
):
    """Shuffled, class-weighted batches: one pass over `x`, or `batches` of them (the data
    repeated). Under TensorFlow's backend augmented here, in tf.data; under the others by the
    model `training_model` makes."""
    weights = sample_weights(y, n_classes) if cfg.class_weights else np.ones(len(y), np.float32)
    labels = np.eye(n_classes, dtype=np.float32)[y]
    if not uses_tf_data():
        return keras_batches(x, labels, weights, cfg.batch_size, seed, shuffle=True, batches=batches)

    import tensorflow as tf

    augment = augmentation(cfg, seed)

    def augmented(images, batch_labels, batch_weights):
        return augment(tf.cast(images, tf.float32), training=True), batch_labels, batch_weights

    dataset = tf.data.Dataset.from_tensor_slices((x, labels, weights))
    dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(cfg.batch_size)
    dataset = dataset.map(augmented, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    return dataset.repeat().take(batches) if batches else dataset


def training_model(network, cfg: TrainConfig, seed: int):
    """The model `fit` trains: `network` itself where tf.data augments the batches; under the other
    backends the augmentation ahead of it, inside the compiled training step (so on the
    accelerator, where there is one) and the identity outside training. `classifier_of` gives
    the network back."""
    if uses_tf_data():
        return network
    import keras

    augment = augmentation(cfg, seed)
    if keras.config.backend() == "jax":
        # Keras's random-geometry layers (RandomRotation and others) say `supports_jit = False`, for
        # TensorFlow's XLA, and that turns XLA off for the whole step; under JAX they compile
        # (checked with JAX 0.10.2), and a JAX step without XLA runs each op on its own, 1.4x slower.
        for layer in augment.layers:
            layer.supports_jit = True
    images = keras.Input(network.input_shape[1:], name="image")
    return keras.Model(images, network(augment(images)), name=TRAINING_MODEL)


def classifier_of(model):
    """The classifier a `training_model` trains (the model itself where it has no augmentation)."""
    return model.layers[-1] if model.name == TRAINING_MODEL else model


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


def keras_batches(x, labels, weights, batch_size: int, seed: int, *, shuffle: bool = False, batches: int | None = None):
    """Batches as float32 arrays in a Keras PyDataset, for the backends without tf.data: in a new
    order every epoch where `shuffle`, else in order. `batches`: that many (the data repeated),
    else one pass."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()  # one worker: slicing arrays costs little beside a step
            self.rng = np.random.default_rng(seed)
            self.per_pass = -(-len(x) // batch_size)
            self.on_epoch_end()

        def __len__(self) -> int:
            return batches or self.per_pass

        def __getitem__(self, index: int):
            chosen = self.order[(index % self.per_pass) * batch_size :][:batch_size]
            images = x[chosen].astype(np.float32)
            return (images, labels[chosen]) if weights is None else (images, labels[chosen], weights[chosen])

        def on_epoch_end(self) -> None:
            self.order = self.rng.permutation(len(x)) if shuffle else np.arange(len(x))

    return Batches()


def sample_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Balanced class weights: every class contributes equally to the loss."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    per_class = len(y) / (n_classes * np.maximum(counts, 1))
    return per_class[y].astype(np.float32)


def augmentation(cfg: TrainConfig, seed: int):
    """Training-only augmentation of 0-255 float images, as Keras layers (in float32 also under
    mixed precision): the identity outside training."""
    import keras
    from keras import layers

    from medcls.model.augmentation_layers import AcquisitionShift, QuarterTurns

    augment, exact = cfg.augment, {"dtype": "float32"}
    steps = [QuarterTurns(seed=seed + 7, **exact)] if augment.quarter_turns else []
    if augment.horizontal_flip or augment.vertical_flip:
        mode = "horizontal_and_vertical" if augment.horizontal_flip and augment.vertical_flip else None
        mode = mode or ("horizontal" if augment.horizontal_flip else "vertical")
        steps.append(layers.RandomFlip(mode, seed=seed + 3, **exact))
    if augment.rotation_degrees:
        rotation = augment.rotation_degrees / 360.0
        steps.append(layers.RandomRotation(rotation, fill_mode="reflect", seed=seed, **exact))
    if augment.shift_fraction:
        shift = augment.shift_fraction
        steps.append(layers.RandomTranslation(shift, shift, fill_mode="reflect", seed=seed + 1, **exact))
    if augment.zoom_fraction:
        steps.append(layers.RandomZoom(augment.zoom_fraction, fill_mode="reflect", seed=seed + 4, **exact))
    if augment.brightness:
        steps.append(layers.RandomBrightness(augment.brightness, value_range=(0, 255), seed=seed + 5, **exact))
    if augment.contrast:
        steps.append(layers.RandomContrast(augment.contrast, value_range=(0, 255), seed=seed + 2, **exact))
    if augment.blur_sigma:
        kernel = 2 * math.ceil(2 * augment.blur_sigma) + 1  # covers two sigmas each side
        blur = {"factor": (0.5, 0.5), "kernel_size": kernel, "sigma": (0.0, augment.blur_sigma)}
        steps.append(layers.RandomGaussianBlur(**blur, value_range=(0, 255), seed=seed + 6, **exact))
    if augment.gamma or augment.noise:
        steps.append(AcquisitionShift(augment.gamma, augment.noise, seed=seed + 8, **exact))
    return keras.Sequential(steps or [layers.Identity(**exact)], name="augmentation")
