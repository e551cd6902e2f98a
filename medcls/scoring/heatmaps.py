"""Heat maps: where in the image the network found the evidence for its label.

Grad-CAM (Selvaraju et al. 2017) weights the last convolutional features by the gradients of the
class's logit, averaged per channel, and keeps the positive part. medcls' head is global average
pooling followed by one dense layer, so that gradient is the dense kernel's entry for the channel
and class, divided by the map's area, at every position: Grad-CAM here is exactly the class
activation map of Zhou et al. 2016, ReLU(features . kernel[:, class]). It needs no backward pass,
only the features of the forward pass that made the prediction.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from medcls.catalog import ScoringOutputs
from medcls.config import PreprocessConfig
from medcls.data.preprocess import content_box, display_8bit, fitted_size
from medcls.support.files import write_bytes

VIEW_SIZE = 224  # a smaller image is enlarged to this many pixels on its longer side, for a person to read
MAX_VIEW_SIZE = 2048  # a larger one is shrunk to it: the heat map is coarse, the review image keeps every pixel


def class_activation_maps(features: np.ndarray, kernel: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """One H x W map in 0-1 per image, at the features' resolution (features: N x H x W x K;
    kernel: K x classes), for the class given per image."""
    maps = np.maximum(np.einsum("nhwk,kn->nhw", features.astype(np.float32), kernel[:, classes]), 0.0)
    peaks = maps.max(axis=(1, 2), keepdims=True)
    return np.divide(maps, peaks, out=np.zeros_like(maps), where=peaks > 0)


def overlay(pixels: np.ndarray, heat: np.ndarray, box: tuple[int, int, int, int], input_size: int,
            opacity: float = 0.4) -> np.ndarray:  # fmt: skip
    """The decoded image at its own resolution and aspect (gray or RGB, 8 or 16 bit), as BGR,
    with the map in colour over it. The map covers the model's `input_size` square input; `box`
    (top, left, height, width) is where the image lies in that input, so only that part of the
    map is laid over the image, upsampled onto it."""
    picture = _bgr(display_8bit(pixels))
    height, width = picture.shape[:2]
    view = fitted_size(height, width, min(max(height, width, VIEW_SIZE), MAX_VIEW_SIZE))  # (width, height)
    if view != (width, height):  # nearest when enlarging: a tiny image's pixels stay pixels, not a blur
        enlarging = view[0] > width
        picture = cv2.resize(picture, view, interpolation=cv2.INTER_NEAREST if enlarging else cv2.INTER_AREA)
    top, left, box_height, box_width = box
    heat = cv2.resize(heat.astype(np.float32), (input_size, input_size), interpolation=cv2.INTER_LINEAR)
    heat = cv2.resize(heat[top : top + box_height, left : left + box_width], view, interpolation=cv2.INTER_LINEAR)
    colours = cv2.applyColorMap(np.uint8(np.clip(heat, 0, 1) * 255), cv2.COLORMAP_JET)
    return cv2.addWeighted(colours, opacity, picture, 1 - opacity, 0)


def _bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR if image.ndim == 2 else cv2.COLOR_RGB2BGR)


def encode_jpeg(image: np.ndarray) -> bytes:
    """A viewing aid, not the diagnostic image: JPEG at quality 90 is 13x faster to write and 8x
    smaller than PNG for these overlays, which matters when every review row gets one."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


def heatmap_path(out_dir: Path, image_id: str, version: str) -> Path:
    return ScoringOutputs(out_dir).heatmaps / f"{image_id[:24]}-v{version}.jpg"


def save_heatmap(target: Path, pixels: np.ndarray, heat: np.ndarray, cfg: PreprocessConfig) -> None:
    """The map over the decoded image, as a JPEG (a viewing aid, made again if lost: not flushed
    to disk). `cfg` is the model's preprocessing: where the image lies in its input."""
    box = content_box(pixels.shape[0], pixels.shape[1], cfg)
    write_bytes(target, encode_jpeg(overlay(pixels, heat, box, cfg.image_size)), durable=False)
