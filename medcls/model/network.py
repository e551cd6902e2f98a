"""The network: a residual convolutional feature extractor plus a classifier head, pure Keras 3.

The model takes images exactly as preprocessing writes them (0-255, S x S x C) and carries its
own input handling (scaling and standardisation), so a saved model needs nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from medcls.config import TrainConfig

if TYPE_CHECKING:
    import keras

# Batch-norm statistics must settle within a few hundred steps on small medical data sets;
# Keras' default momentum (0.99) leaves them far from the data's after that few steps. Training
# sets the momentum from the steps per epoch (epoch_average_momentum); this is the floor.
BN_MOMENTUM = 0.9
FEATURES_LAYER = "features"  # last convolutional activation (for heat maps)
POOLED_FEATURES_LAYER = "pooled_features"  # one feature vector per image (for the label audit)
LOGITS_LAYER = "logits"
TEMPERATURE_LAYER = "temperature"  # divides the logits by the calibrated temperature


AUTO_STRIDE_ABOVE = 40  # px: larger inputs may need a strided stem, so the first stage works at 20-32 px


def resolve_stem_stride(cfg: TrainConfig, input_size: int) -> TrainConfig:
    """`stem_stride: auto` without a time budget to plan against (medcls.model.plan chooses it
    where there is one): 1 for inputs up to 40 px and 2 above, so the first stage then costs about
    what a 32-px input's does, while the stem sees every pixel. Also the largest stride `auto`
    can become."""
    if cfg.stem_stride != "auto":
        return cfg
    return cfg.model_copy(update={"stem_stride": 2 if input_size > AUTO_STRIDE_ABOVE else 1})


def build_classifier(
    cfg: TrainConfig,
    input_shape: tuple[int, int, int],
    n_classes: int,
    mean: list[float],
    variance: list[float],
    temperature: float = 1.0,
) -> keras.Model:
    """Input (S, S, C) in 0-255 -> class probabilities softmax(logits / temperature). The head
    runs in float32, also under mixed precision, so probabilities stay exact."""
    import keras
    from keras import layers

    cfg = resolve_stem_stride(cfg, input_shape[0])

    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    x = layers.Normalization(mean=mean, variance=variance, name="standardize")(x)
    features = _feature_extractor(x, cfg)
    x = layers.Dropout(cfg.dropout, name="head_dropout")(features)
    logits = layers.Dense(n_classes, dtype="float32", name=LOGITS_LAYER)(x)
    scaled = layers.Rescaling(1.0 / temperature, dtype="float32", name=TEMPERATURE_LAYER)(logits)
    outputs = layers.Softmax(dtype="float32", name="probabilities")(scaled)
    return keras.Model(inputs, outputs, name="medcls_classifier")


def with_temperature(model: keras.Model, temperature: float) -> keras.Model:
    """The same network and weights, its logits divided by `temperature` (a built-in layer, so
    the saved model loads anywhere without custom objects)."""
    import keras

    config = model.get_config()
    for layer in config["layers"]:
        if layer["name"] == TEMPERATURE_LAYER:
            layer["config"]["scale"] = 1.0 / temperature
    calibrated = keras.Model.from_config(config)
    calibrated.set_weights(model.get_weights())
    return calibrated


def logits_model(model: keras.Model) -> keras.Model:
    """The classifier up to its logits (before temperature and softmax)."""
    import keras

    return keras.Model(model.inputs, model.get_layer(LOGITS_LAYER).output)


def with_features(model: keras.Model) -> keras.Model:
    """The classifier with its last convolutional features as a second output: one forward pass
    gives the probabilities and what a heat map needs."""
    import keras

    return keras.Model(model.inputs, [model.output, model.get_layer(FEATURES_LAYER).output])


def pooled(features: np.ndarray) -> np.ndarray:
    """Each image's pooled feature vector from its last convolutional features (what the head's
    global average pooling computes), in float64."""
    return features.astype(np.float64).mean(axis=(1, 2))


def pooled_features_model(model: keras.Model) -> keras.Model:
    """The classifier up to its pooled features: one vector per image (for the label audit)."""
    import keras

    return keras.Model(model.inputs, model.get_layer(POOLED_FEATURES_LAYER).output)


def logits_kernel(model: keras.Model) -> np.ndarray:
    """The logits layer's kernel (feature channels x classes): how much each channel counts for
    each class."""
    import keras

    return keras.ops.convert_to_numpy(model.get_layer(LOGITS_LAYER).kernel).astype(np.float32)


def _feature_extractor(x: keras.KerasTensor, cfg: TrainConfig) -> keras.KerasTensor:
    """A stem, then one stage of residual blocks per width, halving resolution between stages."""
    from keras import layers

    x = _conv_bn(x, cfg.widths[0], stride=min(cfg.stem_stride, 2), name="stem")
    x = layers.ReLU(name="stem_relu")(x)
    if cfg.stem_stride == 4:
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, width in enumerate(cfg.widths):
        for block in range(cfg.blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            x = _residual_block(x, width, stride, name=f"stage{stage + 1}_block{block + 1}")
    x = layers.Activation("linear", name=FEATURES_LAYER)(x)
    return layers.GlobalAveragePooling2D(name=POOLED_FEATURES_LAYER)(x)


def _residual_block(x: keras.KerasTensor, width: int, stride: int, name: str) -> keras.KerasTensor:
    from keras import layers

    shortcut = x
    y = layers.ReLU(name=f"{name}_relu1")(_conv_bn(x, width, stride, name=f"{name}_conv1"))
    y = _conv_bn(y, width, 1, name=f"{name}_conv2")
    if stride != 1:
        # Every other pixel, then the 1x1 projection: exactly a 1x1 convolution of stride 2, which
        # TensorFlow 2.21's oneDNN kernels crash on (CPUs without AVX-512) when a batch is odd.
        shortcut = layers.MaxPooling2D(pool_size=1, strides=stride, name=f"{name}_subsample")(shortcut)
    if stride != 1 or x.shape[-1] != width:
        shortcut = _conv_bn(shortcut, width, 1, name=f"{name}_shortcut", kernel=1)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))


def _conv_bn(x: keras.KerasTensor, width: int, stride: int, name: str, kernel: int = 3) -> keras.KerasTensor:
    from keras import layers

    x = layers.Conv2D(width, kernel, strides=stride, padding="same", use_bias=False, name=name)(x)
    return layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)


def forward_flops(model: keras.Model) -> int:
    """Floating-point operations of one image's forward pass through the convolutions and dense
    layers (a multiply-add counts two), the figure FLOP/s rates are computed from. A training
    step costs about three times as much (forward, and backward for inputs and weights)."""
    from keras import layers

    flops = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            kernel_h, kernel_w = layer.kernel_size
            _, out_h, out_w, out_c = layer.output.shape
            flops += 2 * kernel_h * kernel_w * layer.input.shape[-1] * out_h * out_w * out_c
        elif isinstance(layer, layers.Dense):
            flops += 2 * layer.input.shape[-1] * layer.units
    return flops


def epoch_average_momentum(steps_per_epoch: int) -> float:
    """The momentum of a moving average over about one epoch (at most 100 batches, at least 10),
    for the batch-norm statistics and the averaged weights: long enough that validation does not
    swing with the last few batches, short enough to settle on small data sets."""
    return 1.0 - 1.0 / min(max(steps_per_epoch, 10), 100)


def set_batchnorm_momentum(model: keras.Model, momentum: float) -> None:
    from keras import layers

    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = momentum
