"""`auto` training settings from the data and the time budget.

Stem stride, width and epochs come from the input size, `train.time_budget_minutes` and this
machine's own speed, measured by a short probe of each candidate down a ladder: the first network
that still trains for enough epochs wins, and it gets as many epochs as the budget holds (up to a
cap). Resolution comes first: small findings are lost to a strided stem sooner than to a narrower
network (BENCHMARKS.md, synthetic data), so inputs above 40 px try a full-resolution first stage
before a strided one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from medcls.config import TrainConfig
from medcls.model.network import AUTO_STRIDE_ABOVE, resolve_stem_stride

WIDTH_LADDER: tuple[tuple[int, ...], ...] = ((32, 64, 128), (24, 48, 96), (16, 32, 64))  # widest first
MAX_AUTO_EPOCHS = 40  # beyond it, validation gains little on the data sets measured (BENCHMARKS.md)
# Enough epochs means about this many images seen, but never fewer than 5 or more than 20 epochs:
# large data sets learn in fewer passes.
ENOUGH_IMAGES_SEEN = 300_000
ENOUGH_EPOCHS_RANGE = (5, 20)
EPOCH_SHARE = 0.9  # of the budget for epochs; the rest for the temperature, the model's logging
VALIDATION_COST = 1 / 3  # a validation image (forward only) against a training image
EPOCH_OVERHEAD_SECONDS = 0.5  # callbacks, metric logging, the iterator's start


@dataclass(frozen=True)
class TrainingPlan:
    """The configuration to train, every `auto` resolved, and how it was chosen."""

    cfg: TrainConfig
    images_per_second: dict[str, float] = field(default_factory=dict)  # rungs probed -> training images/s

    def resolved(self) -> dict[str, object]:
        """What the `auto` settings became, as MLflow params."""
        return {
            "resolved.train.epochs": self.cfg.epochs,
            "resolved.train.widths": list(self.cfg.widths),
            "resolved.train.stem_stride": self.cfg.stem_stride,
        }


def ladder(cfg: TrainConfig, input_size: int) -> list[tuple[int, tuple[int, ...]]]:
    """(stem stride, widths) to probe, best first; explicit settings are kept."""
    widths = WIDTH_LADDER if cfg.widths == "auto" else (tuple(cfg.widths),)
    if cfg.stem_stride != "auto" or input_size <= AUTO_STRIDE_ABOVE:
        return [(resolve_stem_stride(cfg, input_size).stem_stride, w) for w in widths]
    # The full-resolution first stage only where it stays wide enough to be worth it.
    return [(1, w) for w in widths if w[0] >= widths[0][0] * 3 // 4] + [(2, w) for w in widths]


def widths_label(widths: tuple[int, ...] | list[int]) -> str:
    return "-".join(str(width) for width in widths)


def enough_epochs(n_train: int) -> int:
    low, high = ENOUGH_EPOCHS_RANGE
    return min(high, max(low, math.ceil(ENOUGH_IMAGES_SEEN / max(n_train, 1))))


def seconds_per_epoch(n_train: int, n_val: int, images_per_second: float) -> float:
    return (n_train + n_val * VALIDATION_COST) / images_per_second + EPOCH_OVERHEAD_SECONDS


def plan_training(
    cfg: TrainConfig,
    *,
    input_size: int,
    n_train: int,
    n_val: int,
    seconds_left: Callable[[], float],
    probe: Callable[[TrainConfig], float],
) -> TrainingPlan:
    """Resolve `stem_stride`, `widths` and `epochs`: the first rung of the ladder that affords enough
    epochs (or the explicit ones), else the last. `probe(cfg)` measures training images/s of a
    fully specified configuration; `seconds_left()` is what remains of the budget, so the probes'
    own time counts. Only what is `auto` is probed for or changed."""
    rungs = ladder(cfg, input_size)
    if cfg.epochs != "auto" and len(rungs) == 1:  # nothing to choose
        stride, widths = rungs[0]
        return TrainingPlan(cfg.model_copy(update={"stem_stride": stride, "widths": list(widths)}))
    wanted = cfg.epochs if cfg.epochs != "auto" else enough_epochs(n_train)
    speeds: dict[str, float] = {}
    for stride, widths in rungs:
        candidate = cfg.model_copy(update={"stem_stride": stride, "widths": list(widths), "epochs": 1})
        speeds[f"{widths_label(widths)}-s{stride}"] = speed = probe(candidate)
        epoch_seconds = seconds_per_epoch(n_train, n_val, speed)
        affordable = int(seconds_left() * EPOCH_SHARE // epoch_seconds)
        if affordable >= wanted:
            break
    epochs = cfg.epochs if cfg.epochs != "auto" else max(1, min(MAX_AUTO_EPOCHS, affordable))
    plan = TrainingPlan(candidate.model_copy(update={"epochs": epochs}), speeds)
    logging.getLogger(__name__).info(
        "train auto: widths %s, %d epochs, stem stride %d (probed widths-stride %s images/s; about %.0f s an epoch)",
        widths_label(plan.cfg.widths),
        epochs,
        plan.cfg.stem_stride,
        ", ".join(f"{label}: {value:.0f}" for label, value in speeds.items()),
        epoch_seconds,
    )
    return plan
