"""`auto` training settings: the widest network that trains enough epochs in the budget."""

from __future__ import annotations

import mlflow
import pytest

from medcls.config import TrainConfig
from medcls.model.plan import MAX_AUTO_EPOCHS, enough_epochs, plan_training, seconds_per_epoch
from medcls.model.record import load_training
from tests.helpers import train_on_processed


def _plan(cfg: TrainConfig, speeds: dict[int, float], seconds: float, n_train: int = 1000, size: int = 28):
    probed: list[list[int]] = []

    def probe(candidate: TrainConfig) -> float:
        probed.append(candidate.widths if size <= 40 else (candidate.stem_stride, candidate.widths))
        return speeds[candidate.widths[0] if size <= 40 else (candidate.stem_stride, candidate.widths[0])]

    plan = plan_training(cfg, input_size=size, n_train=n_train, n_val=300, seconds_left=lambda: seconds, probe=probe)
    return plan, probed


def test_the_widest_network_that_affords_enough_epochs_gets_as_many_as_fit():
    epoch = seconds_per_epoch(1000, 300, 100.0)
    plan, probed = _plan(TrainConfig(), {32: 100.0, 24: 400.0, 16: 900.0}, seconds=epoch * 30 / 0.9 + 1)
    assert probed == [[32, 64, 128]] and plan.cfg.widths == [32, 64, 128]
    assert plan.cfg.epochs == 30 and plan.cfg.stem_stride == 1
    assert plan.resolved() == {"resolved.train.epochs": 30, "resolved.train.widths": [32, 64, 128],
                               "resolved.train.stem_stride": 1}  # fmt: skip


def test_a_slow_machine_gets_a_narrower_network_and_fewer_epochs():
    epoch = seconds_per_epoch(1000, 300, 150.0)
    speeds = {32: 20.0, 24: 40.0, 16: 150.0}
    plan, probed = _plan(TrainConfig(), speeds, seconds=epoch * 8 / 0.9 + 1)
    assert probed == [[32, 64, 128], [24, 48, 96], [16, 32, 64]]
    assert plan.cfg.widths == [16, 32, 64] and plan.cfg.epochs == 8 and plan.cfg.stem_stride == 1
    assert set(plan.images_per_second) == {"32-64-128-s1", "24-48-96-s1", "16-32-64-s1"}


def test_larger_inputs_keep_full_resolution_while_the_budget_affords_it_then_stride():
    fast = {(1, 32): 90.0, (1, 24): 150.0, (2, 32): 400.0, (2, 24): 600.0, (2, 16): 900.0}
    epoch = seconds_per_epoch(1000, 300, 150.0)
    plan, probed = _plan(TrainConfig(), fast, seconds=epoch * 20 / 0.9 + 1, size=64)
    assert probed == [(1, [32, 64, 128]), (1, [24, 48, 96])]  # never the narrowest at full resolution
    assert (plan.cfg.stem_stride, plan.cfg.widths, plan.cfg.epochs) == (1, [24, 48, 96], 20)
    plan, probed = _plan(TrainConfig(), fast, seconds=seconds_per_epoch(1000, 300, 400.0) * 20 / 0.9 + 1, size=64)
    assert len(probed) == 3 and (plan.cfg.stem_stride, plan.cfg.widths) == (2, [32, 64, 128])
    # An explicit network still gets its stride chosen; an explicit stride is kept.
    plan, probed = _plan(TrainConfig(widths=[8, 16], epochs=3), {(1, 8): 1.0, (2, 8): 1e6}, seconds=60, size=64)
    assert probed == [(1, [8, 16]), (2, [8, 16])] and plan.cfg.stem_stride == 2
    plan, probed = _plan(TrainConfig(widths=[8, 16], epochs=3, stem_stride=4), {}, seconds=60, size=64)
    assert probed == [] and plan.cfg.stem_stride == 4


def test_epochs_are_capped_and_never_below_one():
    plan, _ = _plan(TrainConfig(), {32: 1e6, 24: 1e6, 16: 1e6}, seconds=3600)
    assert plan.cfg.epochs == MAX_AUTO_EPOCHS
    plan, _ = _plan(TrainConfig(), {32: 1.0, 24: 1.0, 16: 1.0}, seconds=5)
    assert plan.cfg.epochs == 1 and plan.cfg.widths == [16, 32, 64]


def test_explicit_settings_are_kept_and_only_auto_ones_probed():
    plan, probed = _plan(TrainConfig(widths=[8, 16], epochs=3, stem_stride=4), {}, seconds=1)
    assert probed == [] and (plan.cfg.widths, plan.cfg.epochs, plan.cfg.stem_stride) == ([8, 16], 3, 4)
    # Explicit epochs, auto widths: the widest network that trains them in the budget.
    epoch = seconds_per_epoch(1000, 300, 50.0)
    plan, probed = _plan(TrainConfig(epochs=12), {32: 10.0, 24: 50.0, 16: 90.0}, seconds=epoch * 12 / 0.9 + 1)
    assert plan.cfg.widths == [24, 48, 96] and plan.cfg.epochs == 12 and len(probed) == 2


@pytest.mark.parametrize(("n_train", "epochs"), [(100, 20), (20_000, 15), (60_000, 5), (1_000_000, 5)])
def test_large_data_sets_need_fewer_epochs(n_train, epochs):
    assert enough_epochs(n_train) == epochs


def test_training_plans_auto_settings_on_this_machine_and_logs_them(trained_project, tmp_path):
    """The real probe and budget: every chosen value is logged, and training ends within it."""
    cfg = TrainConfig(time_budget_minutes=0.25, experiment="tests")  # every other setting the default
    result = train_on_processed(trained_project, cfg, tmp_path, seed=3)
    run = mlflow.get_run(result.run_id)
    assert run.data.params["resolved.train.widths"] == str(result.resolved["resolved.train.widths"])
    assert int(run.data.params["resolved.train.epochs"]) >= result.epochs_run >= 1
    assert run.data.params["resolved.train.stem_stride"] == "1"  # 28-px inputs
    assert any(name.startswith("probe_images_per_second.w") for name in run.data.metrics)
    assert load_training(tmp_path / "models")["resolved"] == result.resolved
    # Within the budget, or, where the first epoch alone (tracing the step included: 15-18 s on a
    # slow phase of a 2-core machine) overran it, stopped right after that epoch.
    assert result.seconds < 15 or result.epochs_run == 1
