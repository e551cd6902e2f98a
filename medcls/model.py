"""The network: a residual convolutional feature extractor plus a classifier head, pure Keras 3.

The model takes images exactly as preprocessing writes them (0-255, S x S x C) and carries its
own input handling (scaling and standardisation), so a saved model needs nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medcls.config import TrainConfig

if TYPE_CHECKING:
    import keras

# Batch-norm statistics must settle within a few hundred steps on small medical data sets;
# Keras' default momentum (0.99) leaves them far from the data's after that few steps.
BN_MOMENTUM = 0.9
FEATURES_LAYER = "features"  # last convolutional activation (for heat maps)


def build_classifier(
    cfg: TrainConfig, input_shape: tuple[int, int, int], n_classes: int, mean: float, variance: float
) -> keras.Model:
    """Input (S, S, C) in 0-255 -> class probabilities (float32, also under mixed precision)."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    x = layers.Normalization(mean=mean, variance=variance, name="standardize")(x)
    features = _feature_extractor(x, cfg)
    x = layers.Dropout(cfg.dropout, name="head_dropout")(features)
    outputs = layers.Dense(n_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="medcls_classifier")


def _feature_extractor(x: keras.KerasTensor, cfg: TrainConfig) -> keras.KerasTensor:
    """A stem, then one stage of residual blocks per width, halving resolution between stages."""
    from keras import layers

    x = _conv_bn(x, cfg.widths[0], stride=1, name="stem")
    x = layers.ReLU(name="stem_relu")(x)
    for stage, width in enumerate(cfg.widths):
        for block in range(cfg.blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            x = _residual_block(x, width, stride, name=f"stage{stage + 1}_block{block + 1}")
    x = layers.Activation("linear", name=FEATURES_LAYER)(x)
    return layers.GlobalAveragePooling2D(name="pooled_features")(x)


def _residual_block(x: keras.KerasTensor, width: int, stride: int, name: str) -> keras.KerasTensor:
    from keras import layers

    shortcut = x
    y = layers.ReLU(name=f"{name}_relu1")(_conv_bn(x, width, stride, name=f"{name}_conv1"))
    y = _conv_bn(y, width, 1, name=f"{name}_conv2")
    if stride != 1 or x.shape[-1] != width:
        shortcut = _conv_bn(x, width, stride, name=f"{name}_shortcut", kernel=1)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))


def _conv_bn(x: keras.KerasTensor, width: int, stride: int, name: str, kernel: int = 3) -> keras.KerasTensor:
    from keras import layers

    x = layers.Conv2D(width, kernel, strides=stride, padding="same", use_bias=False, name=name)(x)
    return layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
