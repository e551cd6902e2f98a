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
from medcls.support.files import write_bytes

VIEW_SIZE = 224  # overlays are enlarged to at least this many pixels per side, for a person to read


def class_activation_maps(features: np.ndarray, kernel: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """One H x W map in 0-1 per image, at the features' resolution (features: N x H x W x K;
    kernel: K x classes), for the class given per image."""
    maps = np.maximum(np.einsum("nhwk,kn->nhw", features.astype(np.float32), kernel[:, classes]), 0.0)
    peaks = maps.max(axis=(1, 2), keepdims=True)
    return np.divide(maps, peaks, out=np.zeros_like(maps), where=peaks > 0)


def overlay(image: np.ndarray, heat: np.ndarray, opacity: float = 0.4) -> np.ndarray:
    """The image (S x S x C uint8, as the model saw it) with the map (any size, 0-1) in colour
    over it, as BGR enlarged to at least VIEW_SIZE pixels per side."""
    side = max(VIEW_SIZE, image.shape[0])
    picture = cv2.resize(image, (side, side), interpolation=cv2.INTER_CUBIC)
    picture = cv2.cvtColor(picture, cv2.COLOR_GRAY2BGR if picture.ndim == 2 else cv2.COLOR_RGB2BGR)
    heat = cv2.resize(heat, (side, side), interpolation=cv2.INTER_LINEAR)
    colours = cv2.applyColorMap(np.uint8(np.clip(heat, 0, 1) * 255), cv2.COLORMAP_JET)
    return cv2.addWeighted(colours, opacity, picture, 1 - opacity, 0)


def encode_jpeg(image: np.ndarray) -> bytes:
    """A viewing aid, not the diagnostic image: JPEG at quality 90 is 13x faster to write and 8x
    smaller than PNG for these overlays, which matters when every review row gets one."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


def heatmap_path(out_dir: Path, image_id: str, version: str) -> Path:
    return ScoringOutputs(out_dir).heatmaps / f"{image_id[:24]}-v{version}.jpg"


def save_heatmap(target: Path, image: np.ndarray, heat: np.ndarray) -> None:
    """The map over its image, as a JPEG (a viewing aid, made again if lost: not flushed to disk)."""
    write_bytes(target, encode_jpeg(overlay(image.astype(np.uint8), heat)), durable=False)
