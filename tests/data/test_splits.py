"""Patient-level splits: all images of a patient in one split, classes kept in every split."""

from __future__ import annotations

import pandas as pd
import pytest

from medcls.data.splits import split_by_patient


def test_split_by_patient_is_stratified_seeded_and_leak_free():
    patients = pd.Series([f"p{i // 3}" for i in range(600)])
    labels = pd.Series(["rare" if i // 3 % 10 == 0 else "common" for i in range(600)])
    split = split_by_patient(labels, patients, {"test": 0.2, "val": 0.1}, seed=5)
    assert split.groupby(patients).nunique().max() == 1
    shares = split.value_counts(normalize=True)
    assert shares["test"] == pytest.approx(0.2, abs=0.03) and shares["val"] == pytest.approx(0.1, abs=0.03)
    assert (pd.crosstab(split, labels) > 0).all().all()
    assert split.equals(split_by_patient(labels, patients, {"test": 0.2, "val": 0.1}, seed=5))
    assert not split.equals(split_by_patient(labels, patients, {"test": 0.2, "val": 0.1}, seed=6))
