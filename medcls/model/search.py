"""`train.search`: a small fixed set of candidates around the planned network, each trained on an
equal share of the time budget and compared on validation only (the test split stays unread).

The candidates vary what the data decides best and no default can know: the network's width, the
input resolution its first stage sees, and how strongly the images are augmented.
"""

from __future__ import annotations

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
