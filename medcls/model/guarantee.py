"""A certified auto-label threshold: the error among auto-labelled images is at most `alpha`, with
probability at least `1 - delta` over the draw of the calibration images.

Learn-then-Test (Angelopoulos et al. 2021): each candidate threshold on the calibrated confidence
is a hypothesis "the error among images at or above it exceeds alpha", tested on the calibration
split with the exact binomial p-value (SciPy; the loss is 0/1), in a fixed sequence (MAPIE's
family-wise error control) that keeps the family-wise error at delta. The order of the sequence
(the most promising thresholds first) is learned on the validation split, which is independent
of the calibration split: testing from the highest threshold down would stop at the first
sparsely populated one. The lowest certified threshold (the largest share auto-labelled) is
chosen. Per class, each predicted class gets its own threshold, at delta divided by the number
of classes (Bonferroni).

What it assumes: new images are exchangeable with the calibration images (drawn from the same
population). The out-of-distribution gate and the drift alarm watch that assumption.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np

THRESHOLDS = np.round(1 - np.logspace(np.log10(0.5), -5, 120), 6)  # candidates, dense towards 1


@dataclass(frozen=True)
class Guarantee:
    """What travels with a model: the certified threshold(s) and what they rest on."""

    mode: str  # marginal or per_class
    alpha: float  # the bound on the error among auto labels
    delta: float  # the chance that the bound fails
    calibration_images: int
    threshold: float | None  # marginal: None when nothing could be certified
    class_thresholds: dict[str, float | None] = field(default_factory=dict)  # per_class mode
    expected_coverage: float = 0.0  # share of calibration images auto-labelled
    calibration_error: float | None = None  # observed error among them
    needed: int = 0  # correct calibration images at a threshold that certifying needs at the least

    @property
    def certified(self) -> bool:
        if self.mode == "per_class":
            return any(value is not None for value in self.class_thresholds.values())
        return self.threshold is not None

    def describe(self) -> str:
        if not self.certified:
            return (
                f"no threshold certified (error <= {self.alpha} at {1 - self.delta:.0%} confidence needs at least "
                f"{self.needed} correctly predicted calibration images above a threshold; it has "
                f"{self.calibration_images} calibration images): nothing is auto-labelled"
            )
        return (
            f"auto labels at {self._where()}: error <= {self.alpha} with {1 - self.delta:.0%} confidence, "
            f"{self.expected_coverage:.0%} of {self.calibration_images} calibration images auto-labelled "
            f"({self.calibration_error:.2%} wrong)"
        )

    def brief(self) -> str:
        """The guarantee in a few words (`medcls summary`)."""
        if not self.certified:
            return (
                f"none certified (of {self.calibration_images} calibration images, a threshold needs "
                f">= {self.needed} above it, all correct)"
            )
        where = self._where() if self.mode == "marginal" else "a threshold per class"
        return f"error <= {self.alpha} ({1 - self.delta:.0%}) at {where}: ~{self.expected_coverage:.0%} auto"

    def _where(self) -> str:
        if self.mode == "marginal":
            return f"confidence >= {self.threshold}"
        held = {name: value for name, value in self.class_thresholds.items() if value is not None}
        where = ", ".join(f"{name} >= {value}" for name, value in held.items())
        missing = len(self.class_thresholds) - len(held)
        return where + (f" (no threshold for the {missing} other class(es))" if missing else "")

    def cutoffs(self, predicted: np.ndarray, class_names: list[str]) -> np.ndarray:
        """The confidence an auto label needs, for rows predicted as these class indices (inf
        where no threshold is certified)."""
        if self.mode == "per_class":
            per_class = np.array([_or_never(self.class_thresholds.get(name)) for name in class_names])
            return per_class[predicted]
        return np.full(len(predicted), _or_never(self.threshold))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Guarantee:
        return cls(**values)


def certify(
    calibration: tuple[np.ndarray, np.ndarray],
    ordering: tuple[np.ndarray, np.ndarray],
    class_names: list[str],
    alpha: float,
    delta: float,
    mode: str,
) -> Guarantee:
    """Certify the threshold(s): `calibration` holds the calibration images' calibrated
    probabilities and labels, `ordering` the same for independent images (validation) that only
    order the thresholds to test."""
    (probabilities, y), (order_probabilities, order_y) = calibration, ordering
    confidence, predicted = probabilities.max(axis=1), probabilities.argmax(axis=1)
    correct = predicted == y
    order_confidence, order_predicted = order_probabilities.max(axis=1), order_probabilities.argmax(axis=1)
    order_correct = order_predicted == order_y
    if mode == "per_class":
        level = delta / len(class_names)
        thresholds = {
            name: _certified_threshold(
                (confidence[predicted == index], correct[predicted == index]),
                (order_confidence[order_predicted == index], order_correct[order_predicted == index]),
                alpha,
                level,
            )
            for index, name in enumerate(class_names)
        }
        guarantee = Guarantee(mode, alpha, delta, len(y), None, thresholds, needed=minimum_needed(alpha, level))
    else:
        threshold = _certified_threshold((confidence, correct), (order_confidence, order_correct), alpha, delta)
        guarantee = Guarantee(mode, alpha, delta, len(y), threshold, needed=minimum_needed(alpha, delta))
    accepted = confidence >= guarantee.cutoffs(predicted, class_names)
    return replace(
        guarantee,
        expected_coverage=float(accepted.mean()) if len(y) else 0.0,
        calibration_error=float(1 - correct[accepted].mean()) if accepted.any() else None,
    )


def minimum_needed(alpha: float, delta: float) -> int:
    """The fewest images above a threshold, all correct, that can certify error <= alpha at level
    delta: (1 - alpha)^n <= delta (the binomial p-value of n correct out of n)."""
    return math.ceil(math.log(delta) / math.log(1 - alpha))


def _certified_threshold(
    calibration: tuple[np.ndarray, np.ndarray], ordering: tuple[np.ndarray, np.ndarray], alpha: float, delta: float
) -> float | None:
    """The lowest threshold whose error among calibration images at or above it is certified
    at most `alpha` (family-wise level `delta`); None if none is."""
    from mapie.risk_control import control_fwer

    if len(calibration[0]) == 0:
        return None
    # The sequence: the thresholds most promising on the ordering images first (ties: the higher
    # first); the ordering images are independent of the calibration images.
    order = np.lexsort((-THRESHOLDS, _p_values(*ordering, alpha)))
    certified = control_fwer(_p_values(*calibration, alpha)[order], delta, fwer_method="split_fixed_sequence")
    return float(THRESHOLDS[order][certified].min()) if len(certified) else None


def _p_values(confidence: np.ndarray, correct: np.ndarray, alpha: float) -> np.ndarray:
    """Per candidate threshold, the exact binomial p-value of "the error among images at or above
    it exceeds alpha": P(Binomial(n, alpha) <= wrong) for n images above it (1 where none is).
    Counted in integers: MAPIE 1.6.0 takes the count of errors as ceil(n * mean), which float
    round-off makes one too many for some n (2 of 338 counts as 3), failing thresholds it should
    certify."""
    from scipy.stats import binom

    def at_or_above(values: np.ndarray) -> np.ndarray:
        return len(values) - np.searchsorted(np.sort(values), THRESHOLDS, side="left")

    images, wrong = at_or_above(confidence), at_or_above(confidence[~correct.astype(bool)])
    return np.where(images > 0, binom.cdf(wrong, np.maximum(images, 1), alpha), 1.0)


def _or_never(threshold: float | None) -> float:
    return np.inf if threshold is None else threshold


def error_evidence(wrong: list[bool] | np.ndarray, alpha: float) -> float:
    """Evidence that the error among auto labels exceeds `alpha`, from audited labels in the
    order they were reviewed: an e-process (Waudby-Smith & Ramdas 2023, testing by betting).
    For each bet size lam, the wealth prod(1 + lam * (wrong_i - alpha)) is a nonnegative
    supermartingale while the error is at most alpha; their average over a grid of bet sizes is
    one too. By Ville's inequality it ever reaches 1/delta with probability at most delta, however
    often it is looked at: so it can be checked after every import."""
    outcomes = np.asarray(wrong, dtype=float)
    # Bets up to half of 1/alpha (the most that keeps the wealth positive): one early error alone
    # then never stops auto-labelling, two do.
    bets = np.arange(1, _BETS + 1) / _BETS * 0.5 / alpha
    log_wealth = np.log1p(np.outer(outcomes - alpha, bets)).sum(axis=0)
    return float(np.exp(log_wealth).mean())


_BETS = 20
