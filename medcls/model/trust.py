"""What lets scoring trust an auto label, built from the calibration split once the model is final:
the certified threshold (`guarantee`), the out-of-distribution gate (`outliers`), and the
reference that a scoring run's images are compared with to detect drift.

Written by evaluate to `reports/trust/` (`guarantee.json`, readable, and `trust.npz`), and
attached to each registered version (medcls.registry), so every version scores with its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medcls.catalog import TrustFiles
from medcls.model.guarantee import Guarantee, certify
from medcls.model.outliers import OutlierGate, fit_gate
from medcls.support.files import read_json, write_bytes, write_json

_COMPONENTS = 5  # principal directions of the features along which drift is tested
_BATCH = 256


@dataclass(frozen=True)
class DriftReference:
    """The calibration images as the model sees them: what a scoring run's images are compared with."""

    confidences: np.ndarray
    ood_scores: np.ndarray  # the gate's calibration scores
    predicted: np.ndarray  # class index
    feature_mean: np.ndarray
    components: np.ndarray  # principal directions of the training features (k x features)
    projections: np.ndarray  # the calibration features along them (n x k)

    def project(self, features: np.ndarray) -> np.ndarray:
        return (features - self.feature_mean) @ self.components.T


@dataclass(frozen=True)
class Trust:
    guarantee: Guarantee
    gate: OutlierGate
    reference: DriftReference

    def cutoffs(self, predicted: np.ndarray, class_names: list[str]) -> np.ndarray:
        """The confidence each row needs for an auto label (inf: none is certified for it)."""
        return self.guarantee.cutoffs(predicted, class_names)

    def save(self, folder: Path) -> Path:
        files = TrustFiles(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_json(files.guarantee, self.guarantee.to_dict())
        gate, reference = self.gate, self.reference
        arrays = {"means": gate.means, "whitening": gate.whitening, "calibration_scores": gate.calibration_scores,
                  "confidences": reference.confidences, "predicted": reference.predicted,
                  "feature_mean": reference.feature_mean, "components": reference.components,
                  "projections": reference.projections}  # fmt: skip
        write_bytes(files.arrays, _npz(arrays))
        return folder

    @classmethod
    def load(cls, folder: Path) -> Trust:
        files = TrustFiles(folder)
        guarantee = Guarantee.from_dict(read_json(files.guarantee))
        with np.load(files.arrays) as stored:
            arrays = {name: stored[name] for name in stored.files}
        gate = OutlierGate(arrays["means"], arrays["whitening"], arrays["calibration_scores"])
        reference = DriftReference(
            arrays["confidences"], arrays["calibration_scores"], arrays["predicted"], arrays["feature_mean"],
            arrays["components"], arrays["projections"],
        )  # fmt: skip
        return cls(guarantee, gate, reference)


@dataclass(frozen=True)
class ModelOutputs:
    """The calibrated probabilities and pooled features of some prepared images."""

    probabilities: np.ndarray
    features: np.ndarray
    labels: np.ndarray

    @property
    def confidences(self) -> np.ndarray:
        return self.probabilities.max(axis=1)

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)


def build_trust(
    train: ModelOutputs,
    val: ModelOutputs,
    calibration: ModelOutputs,
    class_names: list[str],
    alpha: float,
    delta: float,
    mode: str,
) -> Trust:
    """Certify the threshold on the calibration images (val only orders the thresholds tested),
    fit the gate on the training features and calibrate it on the calibration features."""
    from sklearn.decomposition import PCA

    certifying, ordering = (calibration.probabilities, calibration.labels), (val.probabilities, val.labels)
    guarantee = certify(certifying, ordering, class_names, alpha, delta, mode)
    gate = fit_gate(train.features, train.labels, calibration.features)
    pca = PCA(min(_COMPONENTS, *train.features.shape), random_state=0).fit(train.features)
    reference = DriftReference(
        calibration.confidences,
        gate.calibration_scores,
        calibration.predicted,
        pca.mean_,
        pca.components_,
        (calibration.features - pca.mean_) @ pca.components_.T,
    )
    return Trust(guarantee, gate, reference)


def model_outputs(model, x: np.ndarray, labels: np.ndarray) -> ModelOutputs:
    """The calibrated probabilities and pooled features of prepared images, one pass per batch."""
    from medcls.model.network import pooled, with_features

    network = with_features(model)
    probabilities, features = [], []
    for start in range(0, len(x), _BATCH):
        batch_probabilities, batch_features = network.predict_on_batch(x[start : start + _BATCH].astype(np.float32))
        probabilities.append(np.asarray(batch_probabilities, np.float64))
        features.append(pooled(np.asarray(batch_features)))
    if not probabilities:
        classes, width = network.outputs[0].shape[-1], network.outputs[1].shape[-1]
        return ModelOutputs(np.zeros((0, classes)), np.zeros((0, width)), labels)
    return ModelOutputs(np.concatenate(probabilities), np.concatenate(features), labels)


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()
