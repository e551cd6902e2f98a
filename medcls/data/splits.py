"""Patient-level splits: all images of a patient land in one split, so no patient leaks."""

from __future__ import annotations

import numpy as np
import pandas as pd


def split_by_patient(labels: pd.Series, patients: pd.Series, fractions: dict[str, float], seed: int) -> pd.Series:
    """Assign each image the split of its patient; the rest of the images go to `train`.

    `fractions` maps split names to the share of images wanted in them (e.g. {"test": 0.15,
    "val": 0.15}). Patients are shuffled per label (their most frequent one), so every split
    keeps the class balance, and allotted by image count.
    """
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"label": labels.to_numpy(), "patient": patients.to_numpy()})
    counts = frame.groupby(["patient", "label"]).size().reset_index(name="images")
    # Each patient's most frequent label (ties: the first label in order).
    majority = counts.sort_values(["patient", "images", "label"], ascending=[True, False, True])
    patient_label = majority.drop_duplicates("patient").set_index("patient")["label"]
    patient_size = frame["patient"].value_counts()
    edges = np.cumsum(list(fractions.values()))
    names = np.array([*fractions, "train"])
    assignment: dict[str, str] = {}
    for _, members in patient_label.groupby(patient_label):
        order = members.index.to_numpy(copy=True)
        rng.shuffle(order)
        sizes = patient_size.loc[order].to_numpy()
        # Each patient sits at the middle of its share of the cumulative image count.
        position = (np.cumsum(sizes) - sizes / 2) / sizes.sum()
        chosen = names[np.searchsorted(edges, position, side="right")]
        if len(order) > 1 and "train" not in chosen:
            chosen[-1] = "train"  # a class must never be missing from training
        assignment.update(zip(order, chosen, strict=True))
    return pd.Series(frame["patient"].map(assignment).to_numpy(), index=labels.index, name="split")
