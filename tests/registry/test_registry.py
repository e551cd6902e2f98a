"""The MLflow Model Registry: the promotion gate, promote and rollback by hand, the listing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from mlflow import MlflowClient

from medcls.config import RegistryConfig
from medcls.errors import RegistryError
from medcls.registry import (
    Contender,
    list_versions,
    production_version,
    promote,
    promotion_decision,
    register_model,
    rollback,
)
from medcls.support.files import read_json, write_json


def test_gate_promotes_first_and_better_versions_of_the_same_task_only():
    classes = ["benign", "malignant"]
    candidate = Contender("4", 0.91, classes)
    assert promotion_decision(candidate, None, 0.0) == (True, "promoted: first version")
    assert promotion_decision(candidate, Contender("3", 0.90, classes), 0.0)[0]
    assert not promotion_decision(Contender("4", 0.90, classes), Contender("3", 0.90, classes), 0.0)[0]  # a tie
    promoted, reason = promotion_decision(Contender("4", 0.905, classes), Contender("3", 0.90, classes), 0.01)
    assert not promoted and reason == "kept in staging: val AUC 0.9050 does not beat v3's 0.9000 by more than 0.01"
    promoted, reason = promotion_decision(Contender("4", 0.99, ["a", "b", "c"]), Contender("3", 0.6, classes), 0.0)
    assert not promoted and "another task" in reason


def test_gate_keeps_a_model_that_misses_a_class_however_good_its_auc():
    classes = ["benign", "malignant"]
    sensitivity = {"benign": 0.97, "malignant": 0.62}
    candidate = Contender("4", 0.99, classes, sensitivity)
    promoted, reason = promotion_decision(candidate, Contender("3", 0.90, classes), 0.0, min_sensitivity=0.8)
    assert not promoted
    assert reason == "kept in staging: val sensitivity below 0.8 for malignant 0.620"
    promoted, reason = promotion_decision(candidate, None, 0.0, min_sensitivity=0.8)
    assert not promoted and "malignant" in reason  # not even as the first version
    worse = Contender("5", 0.80, classes, sensitivity)
    _, reason = promotion_decision(worse, Contender("3", 0.90, classes), 0.0, min_sensitivity=0.8)
    assert "does not beat" in reason and "malignant 0.620" in reason  # every failed check is named
    assert promotion_decision(candidate, Contender("3", 0.90, classes), 0.0, min_sensitivity=0.6)[0]


def _register_with_val_auc(project, tmp_path: Path, auc: float, name: str):
    """Register the trained model again, as if its validation AUC were `auc`."""
    metrics = read_json(project.paths.metrics)
    metrics["val"]["auc"] = auc
    metrics_path = write_json(tmp_path / f"metrics-{auc}.json", metrics)
    return register_model(
        RegistryConfig(model_name=name), project.paths.models, metrics_path, tmp_path / "registry.json"
    )


def test_register_promote_and_rollback(trained_project, tmp_path: Path):
    name = "registry-test"
    first = _register_with_val_auc(trained_project, tmp_path, 0.80, name)
    assert (first.promoted, first.production_version) == (True, first.version)
    worse = _register_with_val_auc(trained_project, tmp_path, 0.75, name)
    assert not worse.promoted and worse.production_version == first.version
    assert read_json(tmp_path / "registry.json") == dataclasses.asdict(worse)
    better = _register_with_val_auc(trained_project, tmp_path, 0.85, name)
    assert better.promoted and str(production_version(name).version) == better.version

    client = MlflowClient()
    promoted = client.get_model_version(name, better.version)
    assert promoted.current_stage == "Production"  # the deprecated stage follows the alias
    assert client.get_model_version(name, first.version).current_stage == "Archived"
    assert promoted.tags["promotion_decision"].startswith("promoted: val AUC 0.8500 beats v1's 0.8000")
    assert client.get_model_version(name, worse.version).tags["promotion_decision"].startswith("kept in staging")

    assert promote(name, worse.version, "doctor prefers it") == better.version
    assert client.get_model_version(name, worse.version).tags["promotion_reason"] == "doctor prefers it"
    assert rollback(name, "back") == better.version
    assert rollback(name, "back again") == first.version
    with pytest.raises(RegistryError, match="no earlier production version"):
        rollback(name, "nothing left")

    listing = list_versions(name)
    assert [v.version for v in listing] == ["1", "2", "3"]
    assert [v.production for v in listing] == [True, False, False]
    assert listing[0].val_auc == pytest.approx(0.80)


def test_promoting_an_unknown_version_is_an_error(trained_project):
    with pytest.raises(RegistryError, match="has no version 99"):
        promote(trained_project.params.registry.model_name, "99", "typo")
