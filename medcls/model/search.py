"""`train.search`: a small fixed set of candidates around the planned network, each trained on an
equal share of the time budget and compared on validation only (the test split stays unread).

The candidates vary what the data decides best and no default can know: the network's width, the
input resolution its first stage sees, and how strongly the images are augmented. A candidate
replaces the planned network only where validation shows it better beyond chance: on a few hundred
validation images the candidates' mean losses differ by noise, and the lowest of them alone picked
a different winner in each of three runs of the same search (BENCHMARKS.md).
"""

from __future__ import annotations

import numpy as np

from medcls.config import AugmentConfig, TrainConfig

PLANNED = "planned"


def stronger_augmentation(augment: AugmentConfig) -> AugmentConfig:
    """More of every geometric and intensity change, and another device's intensity response,
    sharpness and noise: for data whose new images may come from elsewhere."""
    return augment.model_copy(
        update={
            "rotation_degrees": min(180.0, max(10.0, augment.rotation_degrees * 1.5)),
            "shift_fraction": min(0.25, max(0.08, augment.shift_fraction * 1.5)),
            "zoom_fraction": max(0.1, augment.zoom_fraction),
            "brightness": max(0.1, augment.brightness),
            "contrast": min(1.0, max(0.2, augment.contrast * 2)),
            "gamma": max(0.3, augment.gamma),
            "blur_sigma": max(1.0, augment.blur_sigma),
            "noise": max(0.02, augment.noise),
        }
    )


def candidate_names(stem_stride: int) -> list[str]:
    """The search's candidates, the planned network first (for the resolved stem stride)."""
    return [PLANNED, "wider", "stronger-augmentation"] + (["finer-input"] if stem_stride > 1 else [])


def search_candidates(cfg: TrainConfig, planned: TrainConfig) -> dict[str, TrainConfig]:
    """The candidates besides the planned one (`planned`: the first candidate as it was resolved;
    `cfg`: as written, so `auto` epochs are planned again on each candidate's share)."""
    widths = list(planned.widths)
    same_network = {"widths": widths, "stem_stride": planned.stem_stride}
    variations = {
        "wider": {"widths": [width * 3 // 2 for width in widths]},
        "stronger-augmentation": {"augment": stronger_augmentation(planned.augment)},
        "finer-input": {"stem_stride": planned.stem_stride // 2},  # the first stage at twice the resolution
    }
    return {
        name: cfg.model_copy(update=same_network | variations[name])
        for name in candidate_names(planned.stem_stride)[1:]
    }


def improvement_p_value(challenger_nll: np.ndarray, planned_nll: np.ndarray) -> float:
    """One-sided paired t-test, on the same validation images, that the challenger's calibrated
    log loss is lower than the planned network's (1 where they do not differ at all)."""
    from scipy.stats import ttest_rel

    if np.array_equal(challenger_nll, planned_nll):
        return 1.0
    return float(ttest_rel(challenger_nll, planned_nll, alternative="less").pvalue)


def choose_candidate(nll: dict[str, np.ndarray], significance: float) -> tuple[str, dict[str, float]]:
    """The search's winner and each challenger's p-value: the planned network, unless challengers
    beat it at `significance` (Bonferroni over the challengers); then the one of those with the
    lowest mean loss. `nll`: each candidate's per-image validation log loss, the planned first."""
    planned = nll[PLANNED]
    p_values = {name: improvement_p_value(losses, planned) for name, losses in nll.items() if name != PLANNED}
    better = [name for name, p in p_values.items() if p < significance / len(p_values)]
    return min(better, key=lambda name: float(nll[name].mean()), default=PLANNED), p_values
