"""The promotion gate's decision, on figures measured on the same images."""

from __future__ import annotations

from medcls.config import RegistryConfig
from medcls.registry import Figures, promotion_decision

CLASSES = ["benign", "malignant"]
LENIENT = RegistryConfig(min_class_sensitivity=0.0, max_sensitivity_drop=1.0)


def _figures(version: str, auc: float, sensitivity: dict | None = None, classes=CLASSES) -> Figures:
    return Figures(version, auc, classes, sensitivity or {name: 0.9 for name in classes}, images=200)


def test_first_and_better_versions_of_the_same_task_are_promoted():
    candidate = _figures("4", 0.91)
    assert promotion_decision(candidate, None, LENIENT) == (True, "promoted: first version")
    promoted, reason = promotion_decision(candidate, _figures("3", 0.90), LENIENT)
    assert promoted and reason == "promoted: val AUC 0.9100 beats v3's 0.9000 on the same 200 images by more than 0.0"
    assert not promotion_decision(_figures("4", 0.90), _figures("3", 0.90), LENIENT)[0]  # a tie


def test_the_margin_and_another_task_keep_a_candidate_in_staging():
    margin = LENIENT.model_copy(update={"min_auc_improvement": 0.01})
    promoted, reason = promotion_decision(_figures("4", 0.905), _figures("3", 0.90), margin)
    assert not promoted
    assert (
        reason == "kept in staging: val AUC 0.9050 does not beat v3's 0.9000 on the same 200 images by more than 0.01"
    )
    promoted, reason = promotion_decision(_figures("4", 0.99, classes=["a", "b", "c"]), _figures("3", 0.6), LENIENT)
    assert not promoted and "another task" in reason


def test_a_model_that_misses_a_class_is_kept_however_good_its_auc():
    floor = RegistryConfig(min_class_sensitivity=0.8, max_sensitivity_drop=1.0)
    candidate = _figures("4", 0.99, {"benign": 0.97, "malignant": 0.62})
    promoted, reason = promotion_decision(candidate, _figures("3", 0.90), floor)
    assert not promoted and reason == "kept in staging: val sensitivity below 0.8 for malignant 0.620"
    assert not promotion_decision(candidate, None, floor)[0]  # not even as the first version
    _, reason = promotion_decision(_figures("5", 0.80, {"benign": 0.97, "malignant": 0.62}), _figures("3", 0.9), floor)
    assert "does not beat" in reason and "malignant 0.620" in reason  # every failed check is named


def test_a_class_that_loses_more_than_the_tolerance_against_production_blocks():
    tolerance = RegistryConfig(min_class_sensitivity=0.5, max_sensitivity_drop=0.05)
    production = _figures("3", 0.90, {"benign": 0.80, "malignant": 0.90})
    candidate = _figures("4", 0.95, {"benign": 0.95, "malignant": 0.80})
    promoted, reason = promotion_decision(candidate, production, tolerance)
    assert not promoted
    assert "falls more than 0.05 below production's for malignant 0.800 (v3: 0.900)" in reason
    within = _figures("4", 0.95, {"benign": 0.95, "malignant": 0.86})
    assert promotion_decision(within, production, tolerance)[0]


def test_the_shipped_defaults_refuse_a_model_blind_to_one_class():
    blind = _figures("1", 0.95, {"benign": 1.0, "malignant": 0.0})
    promoted, reason = promotion_decision(blind, None, RegistryConfig())
    assert not promoted and "malignant 0.000" in reason


def test_production_s_own_network_with_new_trust_need_not_beat_itself_but_must_pass_the_floors():
    same = _figures("4", 0.90)
    promoted, reason = promotion_decision(same, _figures("3", 0.90), LENIENT, same_network=True)
    assert promoted and reason == "promoted: the network of v3, its auto-label trust rebuilt"
    floor = RegistryConfig(min_class_sensitivity=0.95, max_sensitivity_drop=1.0)
    assert not promotion_decision(same, _figures("3", 0.90), floor, same_network=True)[0]
