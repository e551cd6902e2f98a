"""How far the auto labels can be trusted, measured: for the BloodMNIST and chest X-ray presets and
alpha in {0.01, 0.02, 0.05}, the share of the official test split auto-labelled and the error
among those labels; the out-of-distribution gate given another data set's images (the blood
model given chest X-rays, the chest model given blood cells, the synthetic model given both): the
share auto-labelled and the gate's AUROC; the share of in-distribution images it rejects; and
the drift alarm on each model's test split, chunk by chunk as scoring tests it.

The models are the ones `bench/accuracy.py` trained (its work folders, `.bench/accuracy/<preset>`)
and the default synthetic model, trained here if missing (`.bench/autolabel/synthetic`). Each
image goes through the decision scoring makes (medcls.scoring.triage.decide) with the model's
trust rebuilt per alpha from its calibration split; the test split is read once, at the end.

    .venv/bin/python bench/autolabel.py [--accuracy-workdir .bench/accuracy] [--out .bench/autolabel]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ALPHAS = (0.01, 0.02, 0.05)
DELTA = 0.05
EPSILON = 0.01  # score.ood_false_rejection
CHUNK = 512  # score.chunk_size: the drift alarm tests each chunk (split evenly, as scoring does)
OOD_ALPHA = max(ALPHAS)  # the loosest threshold: the most a foreign image could get through
OLD_RULE = 0.8  # the confidence threshold auto-labelling used before it was certified


@dataclass
class Subject:
    """A trained project: its model, its outputs on each split, and where its raw images are."""

    name: str
    root: Path
    model: object
    class_names: list[str]
    contract: dict
    outputs: dict  # split -> ModelOutputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accuracy-workdir", type=Path, default=REPO / ".bench" / "accuracy")
    parser.add_argument("--out", type=Path, default=REPO / ".bench" / "autolabel")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{REPO / 'mlruns' / 'mlflow.db'}")
    roots = {name: args.accuracy_workdir / name for name in ("bloodmnist", "chest_xray")}
    roots["synthetic"] = _synthetic_project(args.out / "synthetic")
    subjects = {name: _load(name, root) for name, root in roots.items()}
    results = {
        "guarantee": {name: _guarantee_rows(subjects[name]) for name in ("bloodmnist", "chest_xray")},
        "out_of_distribution": _ood_rows(subjects),
        "drift": {name: _drift_rows(subject) for name, subject in subjects.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(markdown(results))


def _synthetic_project(root: Path) -> Path:
    """The default params (the embedded synthetic data), trained once."""
    from medcls import pipeline

    if not (root / "reports" / "trust").exists():
        root.mkdir(parents=True, exist_ok=True)
        (root / "params.yaml").write_text((REPO / "params.yaml").read_text())
        project = pipeline.open_project(root / "params.yaml")
        for step in (pipeline.ingest, pipeline.validate, pipeline.preprocess, pipeline.train, pipeline.evaluate):
            step(project)
    return root


def _load(name: str, root: Path) -> Subject:
    from medcls.catalog import PREPARED_SPLITS
    from medcls.data.preprocess import load_contract, load_split
    from medcls.model.record import load_trained_model
    from medcls.model.trust import model_outputs

    if not (root / "models" / "model.keras").exists():
        sys.exit(f"{root}: no trained model; run `bench/accuracy.py {name}` first")
    model = load_trained_model(root / "models")
    contract = load_contract(root / "data" / "processed")
    outputs = {split: model_outputs(model, *load_split(root / "data" / "processed", split)[:2])
               for split in PREPARED_SPLITS}  # fmt: skip
    return Subject(name, root, model, contract["class_names"], contract, outputs)


def _production(subject: Subject, alpha: float):
    """The subject as a registered model whose trust is certified at `alpha`."""
    from medcls.config import DicomConfig, PreprocessConfig
    from medcls.model.trust import build_trust
    from medcls.registry.models import RegisteredModel

    outputs = subject.outputs
    trust = build_trust(outputs["train"], outputs["val"], outputs["calibration"], subject.class_names, alpha,
                        DELTA, "marginal")  # fmt: skip
    return RegisteredModel(subject.model, subject.name, "bench", subject.class_names,
                           PreprocessConfig(**subject.contract["preprocess"]), DicomConfig(**subject.contract["dicom"]),
                           trust, subject.contract.get("acquisition", {}))  # fmt: skip


def _decide(production, outputs, acquisitions: list[dict], alpha: float) -> dict:
    from medcls.config import ScoreConfig
    from medcls.scoring.triage import decide

    cfg = ScoreConfig(max_auto_error=alpha, guarantee_confidence=1 - DELTA, ood_false_rejection=EPSILON,
                      audit_fraction=0.0)  # fmt: skip
    ids = [str(index) for index in range(len(outputs.labels))]
    return decide(ids, outputs.probabilities, outputs.features, acquisitions, production, cfg)


def _own_acquisitions(subject: Subject, split: str) -> list[dict]:
    from medcls.data.manifest import load_manifest

    manifest = load_manifest(subject.root / "data" / "raw")
    channels = manifest.loc[manifest["split"] == split, "channels"]
    return [{"channels": int(value)} for value in channels]


def _guarantee_rows(subject: Subject) -> list[dict]:
    rows = []
    test = subject.outputs["test"]
    for alpha in ALPHAS:
        started = time.perf_counter()
        production = _production(subject, alpha)
        seconds = time.perf_counter() - started
        guarantee = production.trust.guarantee
        decided = _decide(production, test, _own_acquisitions(subject, "test"), alpha)
        auto = decided["decision"] == "auto"
        wrong = test.predicted != test.labels
        # What scoring would auto-label: chunks where the drift alarm fires go to review.
        after_drift = auto & ~_drifted_rows(production, test)
        rows.append({
            "alpha": alpha,
            "threshold": guarantee.threshold,
            "calibration_images": guarantee.calibration_images,
            "calibration_auto_share": guarantee.expected_coverage,
            "test_images": len(test.labels),
            "test_auto_share": float(auto.mean()),
            "test_auto_error": float(wrong[auto].mean()) if auto.any() else None,
            "test_error_all": float(wrong.mean()),
            "test_out_of_distribution": float((decided["decision"] == "out_of_distribution").mean()),
            "test_auto_share_after_drift": float(after_drift.mean()),
            "test_auto_error_after_drift": float(wrong[after_drift].mean()) if after_drift.any() else None,
            "certify_seconds": seconds,
        })  # fmt: skip
    return rows


def _foreign_outputs(model_subject: Subject, image_subject: Subject):
    """Every image of another project, prepared by the model's own contract, through the model."""
    from medcls.catalog import RawData
    from medcls.config import PreprocessConfig
    from medcls.data.manifest import load_manifest
    from medcls.data.preprocess import prepare_files
    from medcls.model.trust import model_outputs

    raw = image_subject.root / "data" / "raw"
    manifest = load_manifest(raw)
    preprocess = PreprocessConfig(**model_subject.contract["preprocess"])
    files = [RawData(raw).image(file) for file in manifest["file"]]
    x = prepare_files(files, preprocess, f"{image_subject.name} for {model_subject.name}")
    outputs = model_outputs(model_subject.model, x, np.zeros(len(x), int))
    return outputs, [{"channels": int(value)} for value in manifest["channels"]]


def _ood_rows(subjects: dict[str, Subject]) -> list[dict]:
    from sklearn.metrics import roc_auc_score

    pairings = [("bloodmnist", "chest_xray"), ("chest_xray", "bloodmnist"), ("synthetic", "chest_xray"),
                ("synthetic", "bloodmnist")]  # fmt: skip
    rows = []
    for model_name, image_name in pairings:
        subject = subjects[model_name]
        production = _production(subject, OOD_ALPHA)
        gate = production.trust.gate
        foreign, acquisitions = _foreign_outputs(subject, subjects[image_name])
        test = subject.outputs["test"]
        decided = _decide(production, foreign, acquisitions, OOD_ALPHA)
        foreign_scores, own_scores = gate.scores(foreign.features), gate.scores(test.features)
        labels = np.r_[np.zeros(len(own_scores)), np.ones(len(foreign_scores))]
        # What the confidence threshold alone would have let through, without gate or acquisition check.
        threshold_only = foreign.confidences >= production.trust.cutoffs(foreign.predicted, subject.class_names)
        rows.append({
            "model": model_name,
            "images": image_name,
            "count": len(foreign.labels),
            "auto": int((decided["decision"] == "auto").sum()),
            "gate_rejects": float((gate.p_values(foreign_scores) <= EPSILON).mean()),
            "acquisition_rejects": float(np.char.startswith(decided["reason"].astype(str), "a ").mean()),
            "threshold_alone_auto": int(threshold_only.sum()),
            "old_rule_auto": int((foreign.confidences >= OLD_RULE).sum()),
            "gate_auroc": float(roc_auc_score(labels, np.r_[own_scores, foreign_scores])),
            "own_test_rejected": float((gate.p_values(own_scores) <= EPSILON).mean()),
            "own_val_rejected": float((gate.p_values(gate.scores(subject.outputs["val"].features)) <= EPSILON).mean()),
        })  # fmt: skip
    return rows


def _arrival_order(count: int) -> np.ndarray:
    """Images reach an inbox in no particular order; a split is stored by class (folder sources)."""
    return np.random.default_rng(0).permutation(count)


def _chunk_checks(production, outputs):
    """The drift check scoring makes on each chunk, images taken in arrival order: (rows, check)."""
    from medcls.scoring.drift import check_drift
    from medcls.scoring.run import even_chunks

    reference, gate = production.trust.reference, production.trust.gate
    for rows in map(np.asarray, even_chunks(list(_arrival_order(len(outputs.labels))), CHUNK)):
        yield rows, check_drift(reference, outputs.confidences[rows], gate.scores(outputs.features[rows]),
                                outputs.predicted[rows], outputs.features[rows], 0.01)  # fmt: skip


def _drifted_rows(production, outputs) -> np.ndarray:
    drifted = np.zeros(len(outputs.labels), bool)
    for rows, check in _chunk_checks(production, outputs):
        drifted[rows] = check.detected
    return drifted


def _drift_rows(subject: Subject) -> list[dict]:
    production = _production(subject, 0.02)
    rows = []
    for split in ("val", "test"):
        for chunk, (_, check) in enumerate(_chunk_checks(production, subject.outputs[split]), start=1):
            rows.append({"split": split, "chunk": chunk, "images": check.images, "p_value": check.adjusted,
                         "strongest": check.strongest, "drift": check.detected})  # fmt: skip
    return rows


def markdown(results: dict) -> str:
    guarantee = [
        [name, row["alpha"], _or_none(row["threshold"], ".4f"), row["calibration_images"],
         f"{row['calibration_auto_share']:.1%}", f"{row['test_auto_share']:.1%}",
         _or_none(row["test_auto_error"], ".2%"), f"{row['test_error_all']:.2%}",
         f"{row['test_auto_share_after_drift']:.1%}", _or_none(row["test_auto_error_after_drift"], ".2%")]
        for name, rows in results["guarantee"].items() for row in rows
    ]  # fmt: skip
    foreign = [
        [row["model"], row["images"], row["count"], f"**{row['auto']}**", row["threshold_alone_auto"],
         row["old_rule_auto"],
         f"{row['acquisition_rejects']:.1%}", f"{row['gate_rejects']:.1%}", f"{row['gate_auroc']:.4f}",
         f"{row['own_test_rejected']:.2%}", f"{row['own_val_rejected']:.2%}"]
        for row in results["out_of_distribution"]
    ]  # fmt: skip
    drift = [
        [name, row["split"], row["chunk"], row["images"], f"{row['p_value']:.2g}", row["strongest"],
         "**yes**" if row["drift"] else "no"]
        for name, rows in results["drift"].items() for row in rows
    ]  # fmt: skip
    return "\n".join([
        f"### Certified auto labels on the official test split (delta = {DELTA}, marginal)", "",
        _table(["data", "alpha", "threshold", "calibration images", "auto (calibration)", "auto (test)",
                "error among auto (test)", "error of all (test)", "auto after the drift alarm (test)",
                "its error"], guarantee), "",
        f"### Another data set's images (alpha = {OOD_ALPHA}, epsilon = {EPSILON})", "",
        _table(["model", "given", "images", "auto-labelled", "certified threshold alone would auto-label",
                f"confidence >= {OLD_RULE} (before) would auto-label",
                "rejected by the acquisition check", "rejected by the gate", "gate AUROC", "own test rejected",
                "own val rejected"], foreign), "",
        f"### Drift alarm per chunk of {CHUNK} images in random arrival order (family-wise 0.01)", "",
        _table(["model", "split", "chunk", "images", "p-value", "most drifted", "alarm"], drift),
    ])  # fmt: skip


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])


def _or_none(value: float | None, spec: str) -> str:
    return "none" if value is None else format(value, spec)


if __name__ == "__main__":
    main()
