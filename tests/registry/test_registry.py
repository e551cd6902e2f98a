"""The MLflow Model Registry: a fair gate (production measured on the candidate's images), moves
under a lock that no race gets round, promote and rollback by hand, the listing, the lineage.

Candidates here are real Keras models fitted exactly to the validation images of the trained
project (a linear map of the pixels through their pseudo-inverse), so how good each one is on
those images is known: `quality` is the share of images whose true label it reproduces.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import uuid
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from medcls.config import PreprocessConfig, RegistryConfig
from medcls.data.preprocess import load_contract, load_split, preprocess_data
from medcls.errors import RegistryError
from medcls.model.evaluate import classification_metrics
from medcls.model.record import load_training
from medcls.registry import (
    list_versions,
    load_model_version,
    production_history,
    production_version,
    promote,
    register_model,
    rollback,
)
from medcls.registry.comparison import figures_on_candidate_images
from medcls.support.files import read_json, write_json

LENIENT = {"min_class_sensitivity": 0.0, "max_sensitivity_drop": 1.0}


def _candidate(project, folder: Path, quality: float, seed: int = 0) -> Path:
    """A logged model that gets the label of `quality` of the validation images right (the rest
    it calls another class), with the training record and truthful metrics register reads."""
    import keras

    x, y, _ = load_split(project.paths.processed, "val")
    classes = len(load_training(project.paths.models)["class_names"])
    rng = np.random.default_rng(seed)
    wrong = rng.random(len(y)) >= quality
    said = np.where(wrong, (y + rng.integers(1, classes, len(y))) % classes, y)
    flat = x.reshape(len(x), -1).astype(np.float64) / 255.0
    # Logits of 6 for the class it says, below 1 for the others, all distinct: AUCs with no ties
    # for float32 round-off (which differs between batch sizes) to break one way or the other.
    logits = 6.0 * np.eye(classes)[said] + rng.random((len(y), classes))
    kernel = np.linalg.pinv(flat) @ logits
    model = keras.Sequential(
        [keras.Input(x.shape[1:]), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
         keras.layers.Dense(classes, use_bias=False), keras.layers.Softmax()]
    )  # fmt: skip
    model.layers[-2].set_weights([kernel.astype(np.float32)])
    return _record(project, folder, model, x, y)


def _record(project, folder: Path, model, x: np.ndarray, y: np.ndarray) -> Path:
    training = load_training(project.paths.models)
    contract = {key: training[key] for key in ("class_names", "preprocess", "dicom")}
    mlflow.set_experiment("tests")
    with mlflow.start_run() as run:
        info = mlflow.keras.log_model(model, name="model", metadata=contract)
    probabilities = model.predict(x.astype(np.float32), verbose=0).astype(np.float64)
    val = classification_metrics(y, probabilities, training["class_names"], bins=15)
    folder.mkdir(parents=True)
    write_json(folder / "training.json", {**training, "run_id": run.info.run_id, "model_uri": info.model_uri})
    write_json(folder / "metrics.json", {"val": val, "test": val})
    return folder


def _register(project, model_dir: Path, name: str, **gate):
    cfg = RegistryConfig(model_name=name, **(LENIENT | gate))
    return register_model(
        cfg,
        model_dir,
        model_dir / "metrics.json",
        model_dir / "registry.json",
        processed_dir=project.paths.processed,
        raw_dir=project.paths.raw,
        trust_dir=project.paths.trust,  # the trained project's: these tests are about the gate
    )


@pytest.fixture(scope="module")
def candidates(trained_project, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("candidates")
    qualities = {"poor": 0.2, "fair": 0.6, "good": 1.0}
    return {name: _candidate(trained_project, root / name, quality, seed) for seed, (name, quality) in
            enumerate(qualities.items())}  # fmt: skip


def test_register_promote_and_rollback(trained_project, candidates):
    name = f"registry-{uuid.uuid4().hex[:6]}"
    first = _register(trained_project, candidates["fair"], name)
    assert (first.promoted, first.production_version, first.production) == (True, first.version, None)
    worse = _register(trained_project, candidates["poor"], name)
    assert not worse.promoted and worse.production_version == first.version
    assert read_json(candidates["poor"] / "registry.json") == dataclasses.asdict(worse)
    better = _register(trained_project, candidates["good"], name)
    assert better.promoted and str(production_version(name).version) == better.version
    # Production was measured on the candidate's images, not read from a tag.
    fair = read_json(candidates["fair"] / "metrics.json")["val"]
    assert better.production["auc"] == pytest.approx(fair["auc"], abs=1e-4)
    assert better.production["images"] == fair["n"]

    client = MlflowClient()
    promoted = client.get_model_version(name, better.version)
    assert promoted.current_stage == "Production"  # the deprecated stage follows the alias
    assert client.get_model_version(name, first.version).current_stage == "Archived"
    assert promoted.tags["promotion_decision"].startswith(f"promoted: val AUC 1.0000 beats v{first.version}'s")
    assert json.loads(promoted.tags["compared_with"])["version"] == first.version
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


def test_a_production_tag_cannot_flatter_or_hide_production(trained_project, candidates):
    """The old gate read production's val AUC from a tag: absent, any candidate passed."""
    name = f"registry-{uuid.uuid4().hex[:6]}"
    good = _register(trained_project, candidates["good"], name)
    client = MlflowClient()
    client.delete_model_version_tag(name, good.version, "val_auc")
    client.set_model_version_tag(name, good.version, "val_auc", "0.1")
    fair = _register(trained_project, candidates["fair"], name)
    assert not fair.promoted and "does not beat" in fair.reason


def test_sensitivity_may_not_fall_below_productions(trained_project, candidates, tmp_path: Path):
    name = f"registry-{uuid.uuid4().hex[:6]}"
    production = _register(trained_project, candidates["good"], name)
    lowered = tmp_path / "lowered"
    lowered.mkdir()
    metrics = read_json(candidates["good"] / "metrics.json")
    weakest = next(iter(metrics["val"]["per_class"]))
    metrics["val"]["per_class"][weakest]["sensitivity"] = 0.5
    write_json(lowered / "metrics.json", metrics)
    (lowered / "training.json").write_bytes((candidates["good"] / "training.json").read_bytes())
    refused = _register(trained_project, lowered, name, max_sensitivity_drop=0.05)
    assert not refused.promoted and f"for {weakest} 0.500 (v{production.version}: 1.000)" in refused.reason


def test_production_is_measured_with_its_own_preprocessing(trained_project, tmp_path: Path):
    """A candidate trained at another input size: production sees the same images its own way."""
    paths = trained_project.paths
    other = preprocess_data(PreprocessConfig(image_size=20), paths.raw, tmp_path / "processed-20").processed_dir
    assert load_contract(other)["preprocess"]["image_size"] == 20
    production = load_model_version(trained_project.params.registry.model_name, "1")
    on_own = figures_on_candidate_images(production, paths.processed, paths.raw)
    on_other = figures_on_candidate_images(production, other, paths.raw)
    assert on_other.images == on_own.images
    assert on_other.auc == pytest.approx(on_own.auc) and on_other.sensitivity == on_own.sensitivity


def _register_elsewhere(arguments: tuple) -> str:
    """One registration in a process of its own (as a scheduled run beside a manual one)."""
    import os

    tracking_uri, params_path, model_dir, name = arguments
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    from medcls import pipeline

    project = pipeline.open_project(params_path)
    return _register(project, Path(model_dir), name).version


def test_racing_registrations_leave_the_better_one_in_production_and_lose_no_move(trained_project, candidates):
    name = f"registry-{uuid.uuid4().hex[:6]}"
    baseline = _register(trained_project, candidates["poor"], name)
    jobs = [(mlflow.get_tracking_uri(), str(trained_project.paths.params), str(candidates[which]), name)
            for which in ("fair", "good")]  # fmt: skip
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        fair, good = pool.map(_register_elsewhere, jobs)
    assert str(production_version(name).version) == good
    client = MlflowClient()
    decisions = {v: client.get_model_version(name, v).tags["promotion_decision"] for v in (fair, good)}
    assert all(decision.startswith(("promoted", "kept in staging")) for decision in decisions.values())
    promoted_in_race = [v for v in (fair, good) if decisions[v].startswith("promoted")]
    history = production_history(name)
    assert history[0] == baseline.version and history[-1] == good
    assert sorted(history[1:]) == sorted(promoted_in_race)  # every promotion recorded, none lost


def _promote_elsewhere(arguments: tuple) -> str:
    import os

    tracking_uri, name, version = arguments
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    return promote(name, version, f"race to v{version}")


def test_racing_promotions_are_both_in_the_history(trained_project, candidates):
    name = f"registry-{uuid.uuid4().hex[:6]}"
    versions = [_register(trained_project, candidates[which], name).version for which in ("poor", "fair", "good")]
    assert production_history(name) == versions  # each beat the one before
    jobs = [(mlflow.get_tracking_uri(), name, version) for version in versions[:2]]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_promote_elsewhere, jobs)
    assert production_history(name)[:3] == versions and sorted(production_history(name)[3:]) == versions[:2]


def test_promoting_an_unknown_version_is_an_error(trained_project):
    with pytest.raises(RegistryError, match="has no version 99"):
        promote(trained_project.params.registry.model_name, "99", "typo")


def test_a_version_trained_outside_dvc_says_it_has_no_lineage(trained_project):
    registration = read_json(trained_project.paths.registration)
    assert registration["lineage"] == "none: trained outside a DVC project"
    version = MlflowClient().get_model_version(trained_project.params.registry.model_name, registration["version"])
    assert version.tags["dvc_lock"] == registration["lineage"]
    assert version.tags["data_version"] == load_training(trained_project.paths.models)["data_versions"]["data/raw"]
