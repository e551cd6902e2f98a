"""The learning-rate schedule: warm-up, cosine decay, and a decay compressed into the epochs that
still fit when training runs slower than planned, so a run cut by its budget ends annealed."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from medcls.model import train as train_module
from medcls.model.schedule import FINAL_FRACTION, WARMUP_START, budgeted_cosine, epochs_that_fit

PEAK = 0.5


def _rate(schedule, step: int) -> float:
    from keras import ops

    return float(ops.convert_to_numpy(schedule(step)))


def test_warm_up_then_cosine_decay_to_the_last_step():
    schedule = budgeted_cosine(PEAK, warmup_steps=10, total_steps=110)
    assert _rate(schedule, 0) == pytest.approx(PEAK * WARMUP_START)
    assert _rate(schedule, 10) == pytest.approx(PEAK)
    assert _rate(schedule, 60) == pytest.approx(PEAK * (FINAL_FRACTION + (1 - FINAL_FRACTION) / 2))
    assert _rate(schedule, 110) == _rate(schedule, 500) == pytest.approx(PEAK * FINAL_FRACTION)
    assert _rate(budgeted_cosine(PEAK, 0, 100), 0) == pytest.approx(PEAK)  # no warm-up


def test_a_compressed_decay_stays_continuous_and_ends_earlier():
    schedule = budgeted_cosine(PEAK, warmup_steps=10, total_steps=110)
    before = _rate(schedule, 40)
    schedule.compress(40, 70)
    assert _rate(schedule, 40) == pytest.approx(before)  # no jump
    rates = [_rate(schedule, step) for step in range(40, 71)]
    assert all(later < earlier for earlier, later in itertools.pairwise(rates))
    assert _rate(schedule, 70) == pytest.approx(PEAK * FINAL_FRACTION)
    schedule.compress(50, 90)  # never later than it is
    assert _rate(schedule, 70) == pytest.approx(PEAK * FINAL_FRACTION)
    assert schedule.get_config()["total_steps"] == 70


@pytest.mark.parametrize(("left", "pace", "fit"), [(100.0, 10.0, 10), (99.9, 10.0, 9), (5.0, 10.0, 0), (-3.0, 1.0, 0)])
def test_epochs_that_fit(left, pace, fit):
    assert epochs_that_fit(left, pace) == fit


class _Clock:
    """Stands in for the time module in medcls.model.train: every epoch takes 10 s."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def _fit_on_the_clock(monkeypatch, budget_seconds: float, planned: int, epoch_seconds: float):
    """One weight trained with plain SGD and a gradient of 1 (so each step moves it by exactly the
    learning rate), under `keep_to_budget`, every epoch taking `epoch_seconds` on a stand-in clock;
    returns the history and the weight after each step."""
    import keras

    clock = _Clock()
    monkeypatch.setattr(train_module, "time", clock)
    budget = train_module.Budget(budget_seconds)
    schedule = budgeted_cosine(PEAK, warmup_steps=STEPS, total_steps=STEPS * planned)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss=lambda y_true, y_pred: keras.ops.mean(y_pred))
    weights = []

    class EpochTakes(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            clock.now += epoch_seconds

    class WeightPerStep(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            weights.append(float(self.model.get_weights()[0][0, 0]))

    keeping = train_module.keep_to_budget(budget, planned, STEPS, schedule)
    history = model.fit(
        np.ones((STEPS, 1), np.float32), np.zeros((STEPS, 1), np.float32), batch_size=1, epochs=planned, verbose=0,
        callbacks=[EpochTakes(), keeping, WeightPerStep()],
    )  # fmt: skip
    return history, weights


STEPS = 4  # per epoch


def test_training_slower_than_planned_ends_within_its_budget_annealed(monkeypatch, caplog):
    """A traced training step follows the compressed schedule."""
    # 90 s of the 100 s budget for epochs of 10 s each: 9 of the 10 planned fit.
    history, weights = _fit_on_the_clock(monkeypatch, budget_seconds=100.0, planned=10, epoch_seconds=10.0)
    assert len(history.history["loss"]) == 9
    assert "training ends after epoch 9 of 10, the learning rate's decay compressed" in caplog.text
    applied = -np.diff([0.0, *weights])  # the learning rate of each step, as the traced step used it
    warming = PEAK * (WARMUP_START + (1 - WARMUP_START) * np.arange(STEPS) / STEPS)
    # The second epoch as planned (36 steps of decay); after it, the 32 steps left of the decay
    # compressed into the 28 that fit (the first epoch's pace alone compresses nothing).
    planned_progress = np.arange(STEPS) / (9 * STEPS)
    compressed = planned_progress[-1] + 1 / (9 * STEPS)
    progress = np.concatenate([planned_progress, compressed + (1 - compressed) * np.arange(7 * STEPS) / (7 * STEPS)])
    decaying = PEAK * (FINAL_FRACTION + (1 - FINAL_FRACTION) * 0.5 * (1 + np.cos(math.pi * progress)))
    assert applied == pytest.approx(np.concatenate([warming, decaying]), rel=1e-4)
    assert applied[-1] < 1.3 * PEAK * FINAL_FRACTION  # annealed


def test_training_stops_at_once_where_no_further_epoch_fits(monkeypatch, caplog):
    # The first epoch took 60 s of the 90 s for epochs: the next would overrun.
    history, _ = _fit_on_the_clock(monkeypatch, budget_seconds=100.0, planned=10, epoch_seconds=60.0)
    assert len(history.history["loss"]) == 1
    assert "training ends after epoch 1 of 10, no further epoch fits" in caplog.text
