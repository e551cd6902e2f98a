"""Patient-level splits that never move: all images of a patient land in one split, and which one
depends only on the patient's (salted) id and the split fractions.

Each patient id is hashed to a point in [0, 1); the fractions cut that interval into splits. So
adding images or patients never moves an existing patient, a data set's test split only grows by
new patients, and two versions of a data set are evaluated on the same patients. Classes are
balanced across splits in expectation (the hash knows no label); validation checks every class
reaches every split.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

_SCALE = float(2**64)


def split_by_patient(patients: pd.Series, fractions: dict[str, float]) -> pd.Series:
    """The split of each image's patient: the first `fractions` entry whose share of [0, 1) holds
    the patient's point (e.g. {"test": 0.15, "val": 0.15}: test below 0.15, val below 0.30), else
    `train`."""
    points = patients.map(patient_point)
    edges = np.cumsum(list(fractions.values()))
    names = np.array([*fractions, "train"])
    return pd.Series(names[np.searchsorted(edges, points.to_numpy(), side="right")], index=patients.index, name="split")


def patient_point(patient: str) -> float:
    """A patient's fixed, uniformly spread point in [0, 1)."""
    digest = hashlib.sha256(f"medcls-split:{patient}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE
