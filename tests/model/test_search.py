"""train.search: candidates around the planned network, chosen on validation, each a nested run."""

from __future__ import annotations

import mlflow
import numpy as np

from medcls.config import AugmentConfig, TrainConfig
from medcls.model.search import (
    candidate_names,
    choose_candidate,
    improvement_p_value,
    search_candidates,
    stronger_augmentation,
)
from tests.helpers import train_on_processed


def test_candidates_vary_width_resolution_and_augmentation_around_the_planned_network():
    cfg = TrainConfig(epochs="auto", widths="auto")
    planned = TrainConfig(epochs=12, widths=[24, 48, 96], stem_stride=2)
    candidates = search_candidates(cfg, planned)
    assert list(candidates) == candidate_names(2)[1:] == ["wider", "stronger-augmentation", "finer-input"]
    assert candidates["wider"].widths == [36, 72, 144] and candidates["wider"].stem_stride == 2
    assert candidates["finer-input"].stem_stride == 1 and candidates["finer-input"].widths == [24, 48, 96]
    assert candidates["stronger-augmentation"].augment == stronger_augmentation(planned.augment)
    assert all(candidate.epochs == "auto" for candidate in candidates.values())  # planned on their own share
    assert "finer-input" not in search_candidates(cfg, planned.model_copy(update={"stem_stride": 1}))


def test_stronger_augmentation_adds_acquisition_shift_and_keeps_what_anatomy_forbids():
    stronger = stronger_augmentation(AugmentConfig())
    assert stronger.rotation_degrees > AugmentConfig().rotation_degrees and stronger.contrast == 0.2
    assert (stronger.gamma, stronger.blur_sigma, stronger.noise) == (0.3, 1.0, 0.02)
    assert not stronger.horizontal_flip and not stronger.vertical_flip
    assert stronger_augmentation(AugmentConfig(rotation_degrees=180)).rotation_degrees == 180


def test_search_trains_each_candidate_as_a_nested_run_and_keeps_the_best_on_validation(trained_project, tmp_path):
    cfg = TrainConfig(epochs=2, widths=[8, 16], batch_size=32, search=True, experiment="tests")
    result = train_on_processed(trained_project, cfg, tmp_path, seed=5)
    parent = mlflow.get_run(result.run_id)
    children = mlflow.search_runs(
        experiment_ids=[parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'",
        output_format="list",
    )
    by_name = {child.data.params["search.candidate"]: child for child in children}
    assert set(by_name) == {"planned", "wider", "stronger-augmentation"}  # 28 px: no finer input
    assert by_name["wider"].data.params["train.widths"] == "[12, 24]"
    p_values = {name: parent.data.metrics[f"search.p_value.{name}"] for name in by_name if name != "planned"}
    nll = {name: run.data.metrics["val_nll"] for name, run in by_name.items()}
    assert nll == {name: parent.data.metrics[f"search.val_nll.{name}"] for name in by_name}
    better = [name for name, p in p_values.items() if p < 0.05 / 2]
    winner = parent.data.params["resolved.train.search_winner"]
    assert winner == min(better, key=nll.get, default="planned")
    assert all({"val_auc", "val_acc"} <= set(run.data.metrics) for run in by_name.values())
    assert result.resolved["resolved.train.search_winner"] == winner
    assert result.resolved["resolved.train.widths"] == ([12, 24] if winner == "wider" else [8, 16])
    history = mlflow.MlflowClient().get_metric_history(by_name[winner].info.run_id, "epoch_val_auc")
    assert [m.step for m in history] == [0, 1]
    assert result.best_epoch == 1  # only the second half of a schedule is kept


def _validation_losses(seed: int, images: int = 500) -> np.ndarray:
    return np.random.default_rng(seed).gamma(0.5, 0.4, images)  # log losses: many near 0, a long tail


def test_the_planned_network_stays_unless_a_candidate_is_better_beyond_chance():
    planned = _validation_losses(0)
    noise = np.random.default_rng(1).normal(0, 0.05, planned.size)
    nll = {"planned": planned, "wider": planned + noise - 0.001, "finer-input": planned + noise + 0.01}
    winner, p_values = choose_candidate(nll, significance=0.05)
    assert winner == "planned"  # "wider" has the lowest mean loss, by less than its noise
    assert nll["wider"].mean() < planned.mean() and p_values["wider"] > 0.05 / 2
    assert set(p_values) == {"wider", "finer-input"}


def test_of_the_candidates_better_beyond_chance_the_lowest_loss_wins():
    planned = _validation_losses(0)
    noise = np.random.default_rng(1).normal(0, 0.05, planned.size)
    nll = {"planned": planned, "wider": planned + noise - 0.03, "stronger-augmentation": planned + noise - 0.05}
    winner, p_values = choose_candidate(nll, significance=0.05)
    assert winner == "stronger-augmentation" and max(p_values.values()) < 0.05 / 2


def test_the_level_is_shared_among_the_candidates():
    planned = _validation_losses(0)
    noise = np.random.default_rng(1).normal(0, 0.05, planned.size)
    wider = planned + noise - 0.002  # p between 0.05 / 3 and 0.05
    assert 0.05 / 3 < improvement_p_value(wider, planned) < 0.05
    assert choose_candidate({"planned": planned, "wider": wider}, 0.05)[0] == "wider"
    three = {"planned": planned, "wider": wider, "a": planned + 0.01, "b": planned + 0.01}
    assert choose_candidate(three, 0.05)[0] == "planned"


def test_a_candidate_no_different_from_the_planned_network_does_not_win():
    planned = _validation_losses(0)
    assert improvement_p_value(planned.copy(), planned) == 1.0
    assert choose_candidate({"planned": planned, "wider": planned.copy()}, 0.5) == ("planned", {"wider": 1.0})
