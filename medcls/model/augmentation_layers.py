"""Training-time augmentation Keras lacks, as Keras layers (keras.ops and keras.random only, so
they run in tf.data under TensorFlow's backend and inside the compiled training step under the
others). Imported only where training builds its augmentation: it imports Keras."""

from __future__ import annotations

import keras
from keras import ops


class RandomChange(keras.layers.Layer):
    """A random change of N x S x S x C images in training; the identity otherwise."""

    def __init__(self, seed: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training: bool = False):
        return self.change(images) if training else images

    def change(self, images):
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return super().get_config() | {"seed": self.seed}


class QuarterTurns(RandomChange):
    """Each image turned by 0, 90, 180 or 270 degrees: exact (no resampling), for data without an
    orientation such as cells under a microscope. Square images only; others pass unchanged."""

    def change(self, images):
        if images.shape[1] != images.shape[2]:
            return images
        turns = keras.random.randint((ops.shape(images)[0],), 0, 4, seed=self.seed_generator)
        chosen = ops.reshape(ops.one_hot(turns, 4, dtype=images.dtype), (-1, 4, 1, 1, 1))
        turned = [images]
        for _ in range(3):  # a quarter turn: rows and columns transposed, then the rows reversed
            turned.append(ops.flip(ops.transpose(turned[-1], (0, 2, 1, 3)), axis=1))
        return ops.sum(ops.stack(turned, axis=1) * chosen, axis=1)  # one of the four, exactly


class AcquisitionShift(RandomChange):
    """What another device or site changes in a 0-255 image: its intensity response (a random
    gamma in [exp(-gamma), exp(gamma)] per image) and its noise (Gaussian, a random level per
    image up to `noise` of the 0-255 range). Blur is Keras's RandomGaussianBlur."""

    def __init__(self, gamma: float, noise: float, seed: int, **kwargs) -> None:
        super().__init__(seed, **kwargs)
        self.gamma, self.noise = gamma, noise

    def change(self, images):
        per_image = (ops.shape(images)[0], 1, 1, 1)
        if self.gamma:
            gamma = ops.exp(keras.random.uniform(per_image, -self.gamma, self.gamma, seed=self.seed_generator))
            images = 255.0 * ops.power(images / 255.0, gamma)
        if self.noise:
            level = keras.random.uniform(per_image, 0.0, self.noise * 255.0, seed=self.seed_generator)
            noise = keras.random.normal(ops.shape(images), seed=self.seed_generator)
            images = ops.clip(images + level * noise, 0.0, 255.0)
        return images

    def get_config(self) -> dict:
        return super().get_config() | {"gamma": self.gamma, "noise": self.noise}
