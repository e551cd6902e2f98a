"""Audits that keep the auto-label guarantee honest after deployment.

Scoring sends a random share (`score.audit_fraction`) of the auto labels to review as well
(reason `audit`), chosen independently of whether they are right. Once doctors' reviews of them
come back, the share wrong among them estimates the auto-label error without bias, and an
anytime-valid sequential test (medcls.model.guarantee.error_evidence) decides, after every
import, whether it exceeds the version's alpha: if so, the version's auto labels stop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from medcls.catalog import AUDIT, AUTO, LabelledPool
from medcls.config import ScoreConfig
from medcls.model.guarantee import error_evidence
from medcls.registry.audits import guarantee_terms, record_audits
from medcls.support.files import read_csv_table


@dataclass(frozen=True)
class AuditVerdict:
    version: str
    audited: int  # audited auto labels a doctor has reviewed
    wrong: int  # of those, where the doctor's label differs
    alpha: float
    delta: float
    evidence: float  # against "error <= alpha"; suspends at 1 / delta

    @property
    def exceeded(self) -> bool:
        return self.evidence >= 1 / self.delta

    def describe(self) -> str:
        evidence, limit = f"{self.evidence:.3g}", f"{1 / self.delta:.0f}"
        verdict = (
            f"the error exceeds {self.alpha} (evidence {evidence} >= {limit}): auto labels suspended"
            if self.exceeded
            else f"consistent with error <= {self.alpha} (evidence {evidence}; suspends at {limit})"
        )
        return f"v{self.version}: {self.wrong} of {self.audited} audited auto labels wrong, {verdict}"


def check_audited_labels(
    model_name: str, predictions: pd.DataFrame, pool_dir: Path, fallback: ScoreConfig
) -> list[AuditVerdict]:
    """Test each version's reviewed audit rows, keep the figures on the version, suspend its auto
    labels where the error exceeds its alpha. Versions without a guarantee are tested at
    `score.max_auto_error` and `score.guarantee_confidence`."""
    verdicts = []
    for version, wrong in audit_outcomes(predictions, pool_dir).items():
        alpha, delta = guarantee_terms(model_name, version) or (
            fallback.max_auto_error,
            1 - fallback.guarantee_confidence,
        )
        verdict = AuditVerdict(version, len(wrong), int(sum(wrong)), alpha, delta, error_evidence(wrong, alpha))
        if record_audits(model_name, version, verdict.audited, verdict.wrong, verdict.evidence,
                         verdict.describe() if verdict.exceeded else ""):  # fmt: skip
            verdicts.append(verdict)
    return verdicts


def audited_auto_labels(predictions: pd.DataFrame) -> pd.DataFrame:
    """The auto-labelled rows drawn for audit: they go to review as well."""
    return predictions[(predictions["decision"] == AUTO) & (predictions["reason"] == AUDIT)]


def audit_outcomes(predictions: pd.DataFrame, pool_dir: Path) -> dict[str, list[bool]]:
    """Per model version, whether each audited auto label a doctor reviewed was wrong, in the
    order the reviews were given (the order the sequential test needs)."""
    if predictions.empty or "reason" not in predictions:
        return {}
    audited = audited_auto_labels(predictions)
    pool = read_csv_table(LabelledPool(pool_dir).labels, ("model_version", "reviewer", "reviewed_at"))
    if audited.empty or pool.empty:
        return {}
    doctor = pool[pool["label_source"] == "doctor"][["image_id", "label", "reviewed_at"]]
    reviewed = audited[["image_id", "model_version", "label"]].merge(doctor, on="image_id", suffixes=("_model", ""))
    reviewed = reviewed.sort_values(["reviewed_at", "image_id"], kind="stable")
    return {
        str(version): (rows["label"] != rows["label_model"]).tolist()
        for version, rows in reviewed.groupby("model_version", sort=True)
    }
