"""Every path medcls reads or writes, and every artifact name, in one place (a Kedro-style catalog).

`ProjectPaths` says where each folder of a project is; one layout class per folder names the
files inside it. Stages take folders (`raw_dir: Path`) and find their files through the layout
(`RawData(raw_dir).manifest`), so tests and benchmarks can point a stage at any folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "val", "test")  # what a source may give
CALIBRATION = "calibration"  # carved by medcls only: never fitted on, certifies the auto-label threshold
PREPARED_SPLITS = (*SPLITS, CALIBRATION)
PARAMS_FILE = "params.yaml"
PRESETS_DIR = "presets"  # preset overlays, beside params.yaml (medcls preset NAME)

# Who labels a scored image (`decision` in predictions.csv), and the `reason`s scoring and review share.
AUTO, REVIEW, OUT_OF_DISTRIBUTION = "auto", "review", "out_of_distribution"
AUDIT = "audit"  # the reason of an auto row that also goes to review
DRIFT = "drift"  # the reason of a row sent to review because its chunk drifted


def _file(name: str) -> property:
    """A property giving `root / name`."""
    return property(lambda self: self.root / name, doc=f"`{name}` in this folder")


@dataclass(frozen=True)
class _Folder:
    root: Path


class RawData(_Folder):
    """`data/raw`, written by ingest: every usable image once, and what ingest found."""

    images = _file("images")  # images/<id[:2]>/<image_id><suffix>
    manifest = _file("manifest.parquet")  # one row per image
    dataset = _file("dataset.json")  # class names, counts, source facts
    quarantine = _file("quarantine.csv")  # unusable source files and why
    duplicates = _file("duplicates.csv")  # identical images kept once, or outvoted labels

    def image(self, relative: str) -> Path:
        """A manifest row's `file`, as a path."""
        return self.root / relative


def image_file(image_id: str, suffix: str) -> str:
    """Where data/raw and the labelled pool store an image, relative to their folder: by content
    id, in 256 subfolders (large flat folders make every file creation slow)."""
    return f"images/{image_id[:2]}/{image_id}{suffix}"


class LabelledPool(_Folder):
    """`data/reviewed`, filled by `medcls review import`: doctors' labels (and auto labels) with
    their images, read by ingest as a `csv:` source."""

    labels = _file("labels.csv")
    images = _file("images")


class ProcessedData(_Folder):
    """`data/processed`, written by preprocess: arrays ready for the network and the input contract."""

    contract = _file("contract.json")  # class names, preprocessing, DICOM conversion

    def split(self, name: str) -> Path:
        return self.root / f"{name}.npz"  # x (N x S x S x C uint8), y, image_id


class ModelFiles(_Folder):
    """`models`, written by train."""

    model = _file("model.keras")
    training = _file("training.json")  # MLflow run id, model URI, contract, temperature


class TrustFiles(_Folder):
    """`reports/trust`, written by evaluate: what lets scoring trust an auto label (medcls.model.trust)."""

    guarantee = _file("guarantee.json")  # the certified threshold(s) and what they rest on
    arrays = _file("trust.npz")  # the out-of-distribution gate and the drift reference


class ValidationReports(_Folder):
    """`reports/validation`, written by validate."""

    summary = _file("summary.json")
    report = _file("report.md")
    data_docs = _file("data_docs")  # Great Expectations Data Docs (index.html)


class Plots(_Folder):
    """`reports/plots`, written by evaluate (DVC plots and MLflow artifacts)."""

    confusion_table = _file("confusion.csv")  # one row per test image, for `dvc plots`
    confusion_matrix = _file("confusion_matrix.png")
    roc_curves = _file("roc_curves.png")
    reliability = _file("reliability.png")
    training_curves = _file("training_curves.png")


class ScoringOutputs(_Folder):
    """`outputs` (score.output_dir), written by scoring, review export and the label audit."""

    predictions = _file("predictions.csv")  # one row per image and model version
    pending = _file("predictions.pending")  # each chunk's rows until the run folds them in
    review_queue = _file("review_queue.csv")
    review_tasks = _file("review_tasks.json")  # Label Studio import
    label_config = _file("label_studio.xml")  # Label Studio labelling interface
    label_audit = _file("label_audit.csv")  # likely mislabelled training images
    quarantine = _file("quarantine.csv")  # inbox files moved aside and why
    quarantined = _file("quarantine")  # the moved files
    heatmaps = _file("heatmaps")
    review_images = _file("review_images")  # what each review row's doctor sees: <image_id>.png, pixels only
    index = _file("inbox_index.parquet")  # files read before: path, size, mtime -> image ids
    import_report = _file("review_import_skipped.csv")  # review rows `review import` could not take, and why
    lock = _file(".scoring.lock")


@dataclass(frozen=True)
class ProjectPaths:
    """The folders of a project: fixed ones under the folder of params.yaml, and the inbox and
    outputs that `score.inbox` and `score.output_dir` name (relative to it, or absolute)."""

    root: Path
    inbox: Path
    outputs: Path

    @classmethod
    def under(cls, root: Path, inbox: str = "data/inbox", outputs: str = "outputs") -> ProjectPaths:
        return cls(root, root / inbox, root / outputs)

    params = property(lambda self: self.root / PARAMS_FILE)
    dvc_lock = property(lambda self: self.root / "dvc.lock")  # what `dvc repro` last built, by hash
    presets = property(lambda self: self.root / PRESETS_DIR)
    raw = property(lambda self: self.root / "data" / "raw")
    reviewed = property(lambda self: self.root / "data" / "reviewed")
    processed = property(lambda self: self.root / "data" / "processed")
    downloads = property(lambda self: self.root / "data" / "downloads")  # medmnist:<name> files
    models = property(lambda self: self.root / "models")
    validation = property(lambda self: self.root / "reports" / "validation")
    metrics = property(lambda self: self.root / "reports" / "metrics.json")
    plots = property(lambda self: self.root / "reports" / "plots")
    trust = property(lambda self: self.root / "reports" / "trust")
    history = property(lambda self: self.root / "reports" / "training_history.csv")
    registration = property(lambda self: self.root / "reports" / "registry.json")
    mlruns = property(lambda self: self.root / "mlruns")  # MLflow store (sqlite + artifacts)
