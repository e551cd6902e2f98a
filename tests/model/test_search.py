"""train.search: candidates around the planned network, chosen on validation, each a nested run."""

from __future__ import annotations

import mlflow

from medcls.config import AugmentConfig, TrainConfig
from medcls.model.search import candidate_names, search_candidates, stronger_augmentation
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
    losses = {name: run.data.metrics["val_loss"] for name, run in by_name.items()}
    winner = parent.data.params["resolved.train.search_winner"]
    assert losses[winner] == min(losses.values())
    assert all({"val_auc", "val_acc"} <= set(run.data.metrics) for run in by_name.values())
    assert result.resolved["resolved.train.search_winner"] == winner
    assert result.resolved["resolved.train.widths"] == ([12, 24] if winner == "wider" else [8, 16])
    history = mlflow.MlflowClient().get_metric_history(by_name[winner].info.run_id, "epoch_val_auc")
    assert [m.step for m in history] == [0, 1]
    assert result.best_epoch == 1  # only the second half of a schedule is kept
