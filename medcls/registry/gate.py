"""The promotion gate: whether a candidate may replace the model in production, and why.

Both models are measured on the same images (the candidate's validation split, production's
figures computed there by `comparison`), so the decision compares like with like. Pure decisions
on figures: testable without a registry; `versions` applies them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from medcls.config import RegistryConfig


@dataclass(frozen=True)
class Figures:
    """A version's validation figures on a given set of images, and the classes it predicts."""

    version: str
    auc: float | None
    class_names: list[str] | None
    sensitivity: dict[str, float | None] = field(default_factory=dict)
    images: int = 0


def promotion_decision(
    candidate: Figures, production: Figures | None, cfg: RegistryConfig, same_network: bool = False
) -> tuple[bool, str]:
    """A candidate replaces production only if it solves the same task (same classes), its
    validation AUC beats production's by more than `min_auc_improvement`, no class's sensitivity
    is below `min_class_sensitivity`, and none falls more than `max_sensitivity_drop` below
    production's. The same network as production (its auto-label trust rebuilt, say) need not
    beat itself. The reason names every check that failed, or what decided."""
    blockers = _below_floor(candidate, cfg.min_class_sensitivity)
    if production is None:
        return _decision(blockers, "first version")
    if production.class_names is not None and candidate.class_names != production.class_names:
        blockers.append(
            f"its classes {candidate.class_names} are not v{production.version}'s {production.class_names} "
            "(another task: promote it by hand, or use another registry.model_name)"
        )
        return _decision(blockers, "")
    blockers += _dropped(candidate, production, cfg.max_sensitivity_drop)
    if same_network:
        return _decision(blockers, f"the network of v{production.version}, its auto-label trust rebuilt")
    beats = (candidate.auc or 0.0) > (production.auc or 0.0) + cfg.min_auc_improvement
    comparison = (
        f"val AUC {_figure(candidate.auc)} {'beats' if beats else 'does not beat'} v{production.version}'s "
        f"{_figure(production.auc)} on the same {production.images} images by more than {cfg.min_auc_improvement}"
    )
    return _decision(blockers if beats else [comparison, *blockers], comparison)


def _below_floor(candidate: Figures, floor: float) -> list[str]:
    weak = {name: value for name, value in candidate.sensitivity.items() if (value or 0.0) < floor}
    if not weak:
        return []
    listed = ", ".join(f"{name} {value or 0.0:.3f}" for name, value in weak.items())
    return [f"val sensitivity below {floor} for {listed}"]


def _dropped(candidate: Figures, production: Figures, tolerance: float) -> list[str]:
    drops = {
        name: (before, candidate.sensitivity.get(name) or 0.0)
        for name, before in production.sensitivity.items()
        if before is not None and (candidate.sensitivity.get(name) or 0.0) < before - tolerance
    }
    if not drops:
        return []
    listed = ", ".join(
        f"{name} {after:.3f} (v{production.version}: {before:.3f})" for name, (before, after) in drops.items()
    )
    return [f"val sensitivity falls more than {tolerance} below production's for {listed}"]


def _decision(blockers: list[str], passed: str) -> tuple[bool, str]:
    if blockers:
        return False, "kept in staging: " + "; ".join(blockers)
    return True, f"promoted: {passed}"


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
