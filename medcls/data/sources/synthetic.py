"""`synthetic`: the embedded default data set, medical-like grayscale patches, generated from the seed.

Each synthetic patient has an anatomy (tissue texture, vessels, exposure gradient) and at most
one finding; the finding, not brightness, decides the class:

- `normal`: no finding (vessels and texture only);
- `nodule`: a small, faint round opacity;
- `reticular`: a local patch of fine parallel lines (interstitial pattern);
- `calcification`: a tight cluster of tiny bright specks.

Every image of a patient is a new acquisition of the same anatomy: shifted, rotated, with its
own exposure, gamma, blur and quantum noise. Classes are imbalanced, findings vary in strength
(some are barely visible), so the task is learnable but not trivial.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from medcls.config import DataConfig, DataSource, SyntheticConfig
from medcls.data.sources.base import Source, array_task

CLASS_NAMES = ("calcification", "nodule", "normal", "reticular")
CLASS_FRACTIONS = {"normal": 0.42, "nodule": 0.24, "reticular": 0.22, "calcification": 0.12}


@dataclass(frozen=True)
class SyntheticImage:
    patient: str
    label: str
    pixels: np.ndarray  # uint8, H x W


def open_synthetic(source: DataSource, cfg: DataConfig, seed: int, base_dir: Path) -> Source:
    """The generated images as a source (no split given: ingest splits them by patient)."""
    tasks = (
        array_task(f"synthetic:{number}", image.label, image.patient, None, image.pixels)
        for number, image in enumerate(generate_images(cfg.synthetic, seed))
    )
    return Source(CLASS_NAMES, tasks)


def generate_images(cfg: SyntheticConfig, seed: int) -> Iterator[SyntheticImage]:
    """Yield every image of every synthetic patient, in a fixed order for a given seed."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(list(CLASS_FRACTIONS), size=cfg.patients, p=list(CLASS_FRACTIONS.values()))
    low, high = cfg.images_per_patient
    for index, label in enumerate(labels):
        anatomy = _patient_field(rng, cfg.image_size, str(label), cfg.lesion_strength)
        for _ in range(int(rng.integers(low, high + 1))):
            yield SyntheticImage(f"synthetic-{index:05d}", str(label), _acquire(rng, anatomy))


def _patient_field(rng: np.random.Generator, size: int, label: str, strength: float) -> np.ndarray:
    """The patient's anatomy plus finding, on a canvas larger than the image (room to shift)."""
    canvas = size + size // 2
    field = _smooth_noise(rng, canvas, size / 10) * rng.uniform(0.05, 0.09)
    field += _smooth_noise(rng, canvas, size / 32) * rng.uniform(0.02, 0.04)
    yy, xx = np.mgrid[0:canvas, 0:canvas] / canvas
    field += rng.uniform(0.35, 0.55) + rng.uniform(-0.12, 0.12) * (xx - 0.5)
    field += rng.uniform(-0.12, 0.12) * (yy - 0.5)
    for _ in range(int(rng.integers(1, 4))):
        field += _vessel(rng, canvas, size)
    if label != "normal":
        centre = canvas / 2 + rng.uniform(-0.3, 0.3, size=2) * size
        field += strength * _FINDINGS[label](rng, canvas, size, centre)
    return field


def _acquire(rng: np.random.Generator, field: np.ndarray) -> np.ndarray:
    """One acquisition: pose, exposure, gamma, blur and noise, quantised to 8 bits."""
    canvas = field.shape[0]
    size = canvas * 2 // 3
    shift = rng.uniform(-0.06, 0.06, size=2) * size
    pose = cv2.getRotationMatrix2D((canvas / 2, canvas / 2), rng.uniform(-10, 10), 1.0)
    pose[:, 2] += shift - (canvas - size) / 2
    view = cv2.warpAffine(field, pose, (size, size), flags=cv2.INTER_LINEAR)
    view = np.clip(view * rng.uniform(0.8, 1.2) + rng.uniform(-0.08, 0.08), 0.0, 1.0)
    view = view ** rng.uniform(0.8, 1.25)
    view = cv2.GaussianBlur(view, (0, 0), rng.uniform(0.3, 0.8))
    photons = rng.uniform(400.0, 1500.0)
    view = rng.poisson(view * photons) / photons + rng.normal(0.0, rng.uniform(0.005, 0.015), view.shape)
    return np.clip(view * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _smooth_noise(rng: np.random.Generator, canvas: int, sigma: float) -> np.ndarray:
    noise = cv2.GaussianBlur(rng.standard_normal((canvas, canvas)), (0, 0), sigma)
    return noise / (noise.std() + 1e-9)


def _vessel(rng: np.random.Generator, canvas: int, size: int) -> np.ndarray:
    """A smooth bright curve across the canvas: a confounder that looks like a line finding."""
    t = np.linspace(0.0, 1.0, 4 * canvas)
    start, end = rng.uniform(0, canvas, size=(2, 2))
    bend = rng.uniform(-0.3, 0.3, size=2) * canvas * np.sin(np.pi * t)[:, None]
    points = start + (end - start) * t[:, None] + bend
    layer = np.zeros((canvas, canvas), np.float32)
    thickness = int(rng.integers(1, 3))
    cv2.polylines(layer, [points.astype(np.int32)], False, 1.0, thickness, cv2.LINE_AA)
    return cv2.GaussianBlur(layer, (0, 0), size / 64) * rng.uniform(0.05, 0.12)


def _nodule(rng: np.random.Generator, canvas: int, size: int, centre: np.ndarray) -> np.ndarray:
    sigma = rng.uniform(0.04, 0.07) * size
    return _gaussian(canvas, centre, sigma) * rng.uniform(0.1, 0.5)


def _reticular(rng: np.random.Generator, canvas: int, size: int, centre: np.ndarray) -> np.ndarray:
    yy, xx = np.mgrid[0:canvas, 0:canvas].astype(np.float64)
    angle = rng.uniform(0.0, np.pi)
    period = rng.uniform(0.13, 0.19) * size
    phase = (xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period
    window = _gaussian(canvas, centre, rng.uniform(0.08, 0.13) * size)
    return np.cos(phase) * window * rng.uniform(0.07, 0.28)


def _calcification(rng: np.random.Generator, canvas: int, size: int, centre: np.ndarray) -> np.ndarray:
    layer = np.zeros((canvas, canvas))
    for _ in range(int(rng.integers(3, 8))):
        speck = centre + rng.normal(0.0, 0.06 * size, size=2)
        layer += _gaussian(canvas, speck, 0.02 * size)
    return layer * rng.uniform(0.18, 0.7)


def _gaussian(canvas: int, centre: np.ndarray, sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[0:canvas, 0:canvas]
    distance2 = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2
    return np.exp(-distance2 / (2 * sigma**2))


_FINDINGS = {"nodule": _nodule, "reticular": _reticular, "calcification": _calcification}
