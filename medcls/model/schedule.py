"""The learning-rate schedule, kept to the time budget.

A linear warm-up to the peak rate, then cosine decay to 1 % of it by the last planned step. Where
epochs turn out slower than the plan's probe said (a busy or throttled machine), the decay still
to come is compressed into the epochs that fit, so a run cut short by its budget still ends on
annealed weights instead of stopping at a high rate (where validation is worst).
"""

from __future__ import annotations

import math

WARMUP_START = 0.1  # of the peak, at the first step
FINAL_FRACTION = 0.01  # of the peak, at the last step


def epochs_that_fit(seconds_left: float, seconds_per_epoch: float) -> int:
    """Whole epochs that still fit in `seconds_left` at `seconds_per_epoch` each."""
    return max(0, math.floor(seconds_left / max(seconds_per_epoch, 1e-9)))


def budgeted_cosine(peak: float, warmup_steps: int, total_steps: int):
    """A Keras learning-rate schedule (built here so that Keras is imported only when training)."""
    import keras
    from keras import ops

    class BudgetedCosine(keras.optimizers.schedules.LearningRateSchedule):
        """Warm-up, then cosine decay whose remaining part `compress` can move to an earlier end.
        The decay's progress is linear between an anchor (a step and the progress there) and the
        end step; all three are variables, so a traced training step sees them change."""

        def __init__(self) -> None:
            self.anchor_step = keras.Variable(float(warmup_steps), trainable=False, name="decay_anchor_step")
            self.anchor_progress = keras.Variable(0.0, trainable=False, name="decay_anchor_progress")
            self.end_step = keras.Variable(float(max(total_steps, warmup_steps + 1)), trainable=False,
                                           name="decay_end_step")  # fmt: skip

        def __call__(self, step):
            step = ops.cast(step, "float32")
            warming = peak * (WARMUP_START + (1 - WARMUP_START) * step / max(warmup_steps, 1))
            cosine = 0.5 * (1.0 + ops.cos(math.pi * self._progress(step)))
            return ops.where(step < warmup_steps, warming, peak * (FINAL_FRACTION + (1 - FINAL_FRACTION) * cosine))

        def _progress(self, step):
            """How far through the decay `step` is, 0 to 1."""
            share = (step - self.anchor_step) / ops.maximum(self.end_step - self.anchor_step, 1.0)
            return ops.clip(self.anchor_progress + (1.0 - self.anchor_progress) * share, 0.0, 1.0)

        def compress(self, step: int, end_step: int) -> None:
            """From `step` on, the rest of the decay ends at `end_step` (only ever earlier): the
            rate stays continuous, it only falls faster."""
            step = max(step, warmup_steps)
            end_step = max(end_step, step + 1)
            if end_step >= self.end_step_now():
                return
            self.anchor_progress.assign(float(ops.convert_to_numpy(self._progress(float(step)))))
            self.anchor_step.assign(float(step))
            self.end_step.assign(float(end_step))

        def end_step_now(self) -> int:
            return round(float(ops.convert_to_numpy(self.end_step)))

        def get_config(self) -> dict:
            return {"peak": peak, "warmup_steps": warmup_steps, "total_steps": self.end_step_now()}

    return BudgetedCosine()
