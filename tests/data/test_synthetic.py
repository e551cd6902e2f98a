"""The embedded default data set: deterministic, medical-like, learnable only from local structure."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from medcls.config import SyntheticConfig
from medcls.data.sources.synthetic import CLASS_FRACTIONS, CLASS_NAMES, generate_images

SMALL = SyntheticConfig(patients=120, images_per_patient=(2, 4), image_size=32)


@pytest.fixture(scope="module")
def images():
    return list(generate_images(SMALL, seed=3))


def test_same_seed_same_images(images):
    again = list(generate_images(SMALL, seed=3))
    assert [i.label for i in again] == [i.label for i in images]
    assert all(np.array_equal(a.pixels, b.pixels) for a, b in zip(again, images, strict=True))
    other = next(generate_images(SMALL, seed=4))
    assert not np.array_equal(other.pixels, images[0].pixels)


def test_images_are_8bit_grayscale_of_the_configured_size(images):
    assert {i.pixels.shape for i in images} == {(32, 32)}
    assert {i.pixels.dtype for i in images} == {np.dtype(np.uint8)}
    assert all(i.pixels.std() > 5 for i in images)  # texture and noise, never flat


def test_classes_are_imbalanced_and_patients_have_several_images(images):
    per_label = Counter(i.label for i in images)
    assert set(per_label) == set(CLASS_NAMES) == set(CLASS_FRACTIONS)
    assert per_label["normal"] > 2 * per_label["calcification"]
    per_patient = Counter(i.patient for i in images)
    assert len(per_patient) == SMALL.patients
    assert max(per_patient.values()) >= 3
    labels_per_patient = {p: {i.label for i in images if i.patient == p} for p in per_patient}
    assert all(len(labels) == 1 for labels in labels_per_patient.values())


def test_classes_are_not_told_apart_by_brightness(images):
    """A global-brightness classifier must be near chance: the findings are local."""
    from sklearn.metrics import roc_auc_score

    brightness = np.array([i.pixels.mean() for i in images])
    for name in CLASS_NAMES:
        positives = np.array([i.label == name for i in images])
        assert 0.35 < roc_auc_score(positives, brightness) < 0.65, name


def test_findings_are_local_structure():
    """The same patient anatomy with and without a finding differs only in a small region."""
    from medcls.data.sources.synthetic import _patient_field

    def field(label: str) -> np.ndarray:
        return _patient_field(np.random.default_rng(11), 64, label, 1.0)

    normal = field("normal")
    for label in ("nodule", "reticular", "calcification"):
        difference = np.abs(field(label) - normal)
        changed = difference > 0.1 * difference.max()
        assert 0 < changed.mean() < 0.15, label
