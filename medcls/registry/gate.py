"""The promotion gate: whether a candidate may replace the model in production, and why.

Pure decisions on figures, so they can be tested without a registry; `versions` applies them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Contender:
    """What the promotion gate compares: a version's validation AUC and per-class sensitivity,
    and the classes it predicts."""

    version: str
    val_auc: float | None
    class_names: list[str] | None
    val_sensitivity: dict[str, float | None] = field(default_factory=dict)


def promotion_decision(
    candidate: Contender, production: Contender | None, margin: float, min_sensitivity: float = 0.0
) -> tuple[bool, str]:
    """The gate: a candidate replaces production only if every class reaches `min_sensitivity` on
    validation, and it solves the same task (same classes) and beats production's validation AUC
    by more than `margin`. The reason names every check that failed, or the one that decided."""
    weak = {name: value for name, value in candidate.val_sensitivity.items() if (value or 0.0) < min_sensitivity}
    blockers = []
    if weak:
        listed = ", ".join(f"{name} {value or 0.0:.3f}" for name, value in weak.items())
        blockers.append(f"val sensitivity below {min_sensitivity} for {listed}")
    if production is None:
        return _decision(blockers, "first version")
    if production.class_names is not None and candidate.class_names != production.class_names:
        blockers.append(
            f"its classes {candidate.class_names} are not v{production.version}'s {production.class_names} "
            "(another task: promote it by hand, or use another registry.model_name)"
        )
        return _decision(blockers, "")
    if production.val_auc is None:
        return _decision(blockers, f"v{production.version} in production has no recorded val AUC")
    beats = candidate.val_auc > production.val_auc + margin
    comparison = (
        f"val AUC {candidate.val_auc:.4f} {'beats' if beats else 'does not beat'} "
        f"v{production.version}'s {production.val_auc:.4f} by more than {margin}"
    )
    return _decision(blockers if beats else [comparison, *blockers], comparison)


def _decision(blockers: list[str], passed: str) -> tuple[bool, str]:
    if blockers:
        return False, "kept in staging: " + "; ".join(blockers)
    return True, f"promoted: {passed}"
