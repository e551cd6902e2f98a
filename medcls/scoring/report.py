"""What a scoring run tells its users beyond the counts: what backs its auto labels (a certified
threshold, an uncertified override, nothing, or a suspension by audits) and the drift tests of
each chunk; as a summary line, a markdown table (the Prefect flow run's artifact) and an MLflow
run in the experiment `<model name>-scoring`."""

from __future__ import annotations

from dataclasses import dataclass, field

from medcls.config import ScoreConfig
from medcls.registry.models import RegisteredModel
from medcls.scoring.drift import MIN_IMAGES, DriftCheck


@dataclass(frozen=True)
class RunReport:
    auto_labels: str  # what backs them, in words
    drift: list[DriftCheck] = field(default_factory=list)  # one per chunk scored
    on_drift: str = "review"

    @property
    def drifted(self) -> int:
        return sum(check.detected for check in self.drift)

    def summary(self) -> str:
        tested = [check for check in self.drift if check.tested]
        if not self.drift:
            drift = "no images to test for drift"
        elif not tested:
            drift = f"drift not tested (fewer than {MIN_IMAGES} images per chunk)"
        elif self.drifted:
            action = "their auto labels sent to review" if self.on_drift == "review" else "warning only"
            worst = min(tested, key=lambda check: check.adjusted)
            drift = f"DRIFT in {self.drifted} of {len(tested)} chunks tested ({action}; {worst.describe()})"
        else:
            drift = f"no drift in {len(tested)} chunk(s) tested"
        return f"{self.auto_labels}; {drift}"

    def markdown(self, counts: dict[str, int]) -> str:
        """The run as markdown: counts, what backs the auto labels, the drift tests per chunk."""
        lines = [
            "## Scoring run",
            "",
            "| " + " | ".join(counts) + " |",
            "|" + "---|" * len(counts),
            "| " + " | ".join(str(value) for value in counts.values()) + " |",
            "",
            f"**Auto labels:** {self.auto_labels}",
            "",
            "| chunk | images | drift p-value (Bonferroni) | most drifted | verdict |",
            "|---|---|---|---|---|",
        ]
        for number, check in enumerate(self.drift, 1):
            p_value = f"{check.adjusted:.3g}" if check.tested else "-"
            verdict = "**DRIFT**" if check.detected else ("no drift" if check.tested else "not tested")
            lines.append(f"| {number} | {check.images} | {p_value} | {check.strongest or '-'} | {verdict} |")
        return "\n".join(lines) + "\n"


def auto_label_basis(production: RegisteredModel, cfg: ScoreConfig, suspended: str) -> str:
    """What backs this run's auto labels, in words."""
    if suspended:
        return f"NO auto labels: audits suspended v{production.version}'s ({suspended})"
    if cfg.confidence_threshold is not None:
        return f"auto labels UNCERTIFIED: a fixed score.confidence_threshold of {cfg.confidence_threshold}"
    if production.trust is None:
        return f"NO auto labels: v{production.version} carries no certified threshold (re-run evaluate and register)"
    guarantee = production.trust.guarantee
    return guarantee.describe() if guarantee.certified else f"NO auto labels: {guarantee.describe()}"


def log_run(production: RegisteredModel, cfg: ScoreConfig, counts: dict[str, int], report: RunReport) -> str:
    """An MLflow run in `<model name>-scoring` with this run's counts and drift tests; its id."""
    import mlflow

    from medcls.support.tracking import ensure_experiment

    experiment = ensure_experiment(f"{production.name}-scoring")
    tested = [check for check in report.drift if check.tested]
    metrics = {**{key: float(value) for key, value in counts.items()}, "drift_chunks": float(report.drifted),
               "drift_chunks_tested": float(len(tested))}  # fmt: skip
    if tested:
        metrics["drift_min_p_value"] = min(check.adjusted for check in tested)
    with mlflow.start_run(experiment_id=experiment, run_name=f"score v{production.version}") as run:
        mlflow.set_tags({"model_name": production.name, "model_version": production.version})
        mlflow.log_params({"auto_labels": report.auto_labels[:6000], "on_drift": cfg.on_drift,
                           "drift_significance": cfg.drift_significance,
                           "ood_false_rejection": cfg.ood_false_rejection})  # fmt: skip
        mlflow.log_metrics(metrics)
        mlflow.log_text(report.markdown(counts), "scoring_report.md")
        return run.info.run_id
