"""Typed configuration: `params.yaml` is parsed here, once, into frozen models.

Stages never read `params.yaml`; they take the section they need. Unknown keys are errors, so a
typo fails loudly instead of silently falling back to a default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medcls.errors import ConfigError

SOURCE_SCHEMES = ("synthetic", "medmnist", "folder", "dicom", "csv")  # each read by a module of medcls.data.sources

PositiveInt = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataSource(NamedTuple):
    """`data.source` split into its scheme and location (empty for `synthetic`)."""

    scheme: str
    location: str

    def path(self, base_dir: Path) -> Path:
        """The location as a path, relative locations taken from `base_dir` (the params file's)."""
        return (base_dir / self.location).resolve()


def parse_source(value: str) -> DataSource:
    """Split a `data.source` URI such as `folder:../shared/data/chest_xray`."""
    scheme, _, location = value.partition(":")
    if scheme not in SOURCE_SCHEMES:
        expected = ", ".join(f"{s}:" if s != "synthetic" else s for s in SOURCE_SCHEMES)
        raise ValueError(f"unknown source scheme {scheme!r} (expected one of {expected})")
    if scheme == "synthetic" and location:
        raise ValueError("'synthetic' takes no location")
    if scheme != "synthetic" and not location:
        raise ValueError(f"'{scheme}:' needs a location, e.g. {scheme}:path/to/data")
    return DataSource(scheme, location)


class SyntheticConfig(_Section):
    """The embedded default data set: generated, deterministic from the seed."""

    patients: int = Field(420, ge=12)
    images_per_patient: tuple[PositiveInt, PositiveInt] = (1, 6)
    image_size: int = Field(64, ge=32, le=512)
    # Lesion contrast relative to the anatomy; lower is harder.
    lesion_strength: float = Field(1.0, gt=0.0)

    @model_validator(mode="after")
    def _ordered_range(self) -> SyntheticConfig:
        low, high = self.images_per_patient
        if low > high:
            raise ValueError(f"images_per_patient: {low} > {high}")
        return self


class DicomConfig(_Section):
    """How `dicom:` sources are labelled and how DICOM pixel data becomes an image."""

    # CSV in the DICOM folder: `label` plus `SOPInstanceUID` or `file` (path in the folder),
    # optionally `patient_id` and `split`.
    labels: str = "labels.csv"
    frames: Literal["first", "all"] = "first"  # of multi-frame objects: the first, or each one
    # VOI window: "file" uses the file's window (or VOI LUT), else the full range; "none" keeps
    # the full range; [center, width] fixes one (in modality units, e.g. HU: [-600, 1500]).
    window: Literal["file", "none"] | tuple[float, Annotated[float, Field(gt=0)]] = "file"
    # BurnedInAnnotation=YES means text in the pixels, often patient data: quarantined unless allowed.
    allow_burned_in_annotation: bool = False


class DataConfig(_Section):
    source: str = "synthetic"
    # The task's classes, in order. Images under any other label are quarantined; for sources
    # that store label indices (MedMNIST), index i names class i. Null: the labels found.
    class_names: list[str] | None = None
    # Regex over file names that finds the patient (group 1 if present) when the source names
    # none; unmatched files are their own patient. The default knows the Kermany chest X-rays,
    # where `IM-NNNN` and `NORMAL2-IM-NNNN` are two numbering series (different patients).
    patient_pattern: str = r"(person\d+|(?:NORMAL2-)?IM-\d+)"
    # given: keep the source's split (a missing val split is carved out of train by patient);
    # patient: ignore it and split everything by patient (removes leakage, loses comparability).
    split: Literal["given", "patient"] = "given"
    # Shares of the patients in val and test; a patient's split is fixed by its salted id and these
    # (medcls.data.splits), so new data never moves an old patient.
    val_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    # Patients set apart to certify the auto-label threshold and calibrate the out-of-distribution
    # gate, never used to fit weights, stop early or fit the temperature (carved out of train
    # when the source gives splits). Too few, and no threshold can be certified.
    calibration_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    min_image_size: int = Field(8, ge=1)  # pixels per side; smaller images are quarantined
    # Decompression-bomb guard: images with more pixels are quarantined without being decoded.
    max_image_pixels: int = Field(100_000_000, ge=1)
    # Larger files (and deflated DICOM data sets, once inflated) are quarantined unread.
    max_file_megabytes: int = Field(1024, ge=1)
    # Base URL serving `<name>.npz` for `medmnist:<name>` (default: the official Zenodo record).
    download_mirror: str | None = None
    # Patient ids from a record or a DICOM header are real identifiers: without a secret in
    # MEDCLS_PATIENT_SALT they are refused, unless this says the data is public.
    allow_default_salt: bool = False
    # Auto labels (from scoring) in the labelled pool join training only at or above this
    # calibrated confidence; null: only doctor-reviewed images join.
    auto_label_min_confidence: Fraction | None = None
    dicom: DicomConfig = DicomConfig()
    synthetic: SyntheticConfig = SyntheticConfig()

    @field_validator("source")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        parse_source(value)
        return value

    @field_validator("patient_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @property
    def parsed_source(self) -> DataSource:
        return parse_source(self.source)


class ValidateConfig(_Section):
    # Labels the data must use; null means "whatever the source has".
    expected_labels: list[str] | None = None
    min_images_per_class: int = Field(5, ge=1)
    # Smallest class as a fraction of the training split.
    min_class_fraction: Fraction = 0.02
    image_size_range: tuple[PositiveInt, PositiveInt] = (16, 8192)
    allowed_channels: list[Literal[1, 3, 4]] = [1, 3]
    # Per-image intensity standard deviation (8-bit scale) below which an image is "constant".
    min_intensity_std: float = Field(1.0, ge=0.0)
    # Brightest pixel (8-bit scale) below which an image is "all black".
    min_max_intensity: float = Field(10.0, ge=0.0)
    # An image or patient in two splits leaks test data into training. Only a split given by the
    # source can leak (medcls splits by patient), and official splits do (chest X-ray, BloodMNIST):
    # by default it is reported as a warning so results stay comparable with published ones.
    # `data.split: patient` re-splits instead.
    leakage: Literal["fail", "warn"] = "warn"


class PreprocessConfig(_Section):
    """The input contract: the same values drive training and scoring (saved with the model)."""

    # "auto": the training images' own size (median longer side), 16-64 px (medcls.data.preprocess).
    image_size: Annotated[int, Field(ge=8, le=1024)] | Literal["auto"] = "auto"
    # "auto": RGB if the data holds colour images, else grayscale.
    channels: Literal["auto", 1, 3] = "auto"
    resize: Literal["pad", "stretch"] = "pad"
    clahe: bool = True
    clahe_clip_limit: float = Field(2.0, gt=0.0)
    clahe_tile_grid: int = Field(4, ge=1, le=64)
    denoise: bool = False
    denoise_strength: float = Field(5.0, gt=0.0)
    # "percentile": stretch the 0.5-99.5 percentile range to 0-255 per image (removes exposure
    # differences between devices); "none": keep intensities.
    normalize: Literal["percentile", "none"] = "percentile"
    workers: int = Field(0, ge=0)  # 0: one per core


class AugmentConfig(_Section):
    """Training-only image augmentation; keep it to what the anatomy allows."""

    rotation_degrees: float = Field(8.0, ge=0.0, le=180.0)
    # Random multiples of 90 degrees (exact, no resampling): only for data without an orientation.
    quarter_turns: bool = False
    shift_fraction: Fraction = 0.06
    zoom_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    brightness: Fraction = 0.0  # a random offset of up to this fraction of the 0-255 range
    contrast: Fraction = 0.1
    # Acquisition differences between devices and sites (all off by default):
    gamma: float = Field(0.0, ge=0.0, le=1.0)  # each image through a gamma in [exp(-g), exp(g)]
    blur_sigma: float = Field(0.0, ge=0.0, le=3.0)  # half the images blurred, sigma up to this (px)
    noise: Fraction = 0.0  # Gaussian noise, standard deviation up to this fraction of 0-255
    # Off by default: laterality matters in chest X-rays (cells and tissue patches can flip).
    horizontal_flip: bool = False
    vertical_flip: bool = False


class TrainConfig(_Section):
    # "auto" (epochs, widths): as many epochs and as wide a network as time_budget_minutes allows
    # on this machine, measured with a short probe before training (medcls.model.plan).
    epochs: PositiveInt | Literal["auto"] = "auto"
    # Wall-clock limit of a training run (probe, epochs and all): `auto` settings are planned to
    # fit it, and training stops at the end of the epoch that would overrun it.
    time_budget_minutes: float = Field(30.0, gt=0.0)
    batch_size: PositiveInt = 64
    optimizer: Literal["adamw", "sgd"] = "adamw"  # sgd: Nesterov momentum 0.9
    learning_rate: float = Field(3e-3, gt=0.0)  # peak, after the warm-up; then cosine decay
    warmup_epochs: float = Field(1.0, ge=0.0)
    weight_decay: float = Field(0.05, ge=0.0)
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    # Feature extractor: a stem that shrinks the input by stem_stride (2: strided convolution,
    # 4: then max-pooling), then one residual stage per width, halving the resolution between stages.
    # "auto": 1 up to 40 px inputs; above, 1 where the time budget affords enough epochs at that
    # resolution, else 2 (medcls.model.plan).
    stem_stride: Literal[1, 2, 4, "auto"] = "auto"
    widths: Annotated[list[PositiveInt], Field(min_length=1)] | Literal["auto"] = "auto"
    blocks_per_stage: PositiveInt = 1
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    # Momentum of the batch-norm moving statistics; null: from the steps per epoch (averaging over
    # about one epoch, 0.9 to 0.99).
    batchnorm_momentum: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None
    class_weights: bool = True  # weight the loss so every class counts equally
    # Validate and keep a moving average of the weights over about one epoch (Polyak averaging)
    # instead of the last step's: validation no longer swings with the last few batches.
    average_weights: bool = True
    # Epochs without a lower validation loss; the best epoch's weights are kept. The loss, not the
    # AUC: it still tells epochs (and search candidates) apart once the AUC saturates near 1. Only
    # the second half of the schedule counts (the first half's validation loss is noisy).
    early_stopping_patience: PositiveInt = 10
    augment: AugmentConfig = AugmentConfig()
    # true: also train a wider network, one with a finer first stage and one with stronger
    # augmentation, each on an equal share of the budget (medcls.model.search), every candidate a
    # nested MLflow run; one becomes the model only where validation shows it better beyond chance.
    search: bool = False
    # A candidate replaces the planned network only where a paired test on the validation images
    # finds its calibrated log loss lower at this level (Bonferroni over the candidates).
    search_significance: float = Field(0.05, gt=0.0, lt=1.0)
    experiment: str = Field("medcls", min_length=1)


class EvaluateConfig(_Section):
    calibration_bins: int = Field(15, ge=2, le=100)


class RegistryConfig(_Section):
    model_name: str = Field("medcls", min_length=1)
    # A candidate replaces production only if, on the candidate's validation images (production
    # is scored on them too), its AUC is higher by more than this...
    min_auc_improvement: float = Field(0.0, ge=0.0)
    # ...no class's sensitivity (recall) is below this floor: a model that misses most of one
    # finding is never promoted, however good its AUC, not even as the first version...
    min_class_sensitivity: Fraction = 0.5
    # ...and no class's sensitivity falls more than this below production's.
    max_sensitivity_drop: Fraction = 0.05


class ScoreConfig(_Section):
    inbox: str = "data/inbox"
    output_dir: str = "outputs"
    # Auto labels come with a guarantee: among them, at most a share max_auto_error is wrong, with
    # probability at least guarantee_confidence. The confidence threshold that holds is certified
    # on the calibration split (medcls.model.guarantee) when the model is evaluated; per_class
    # certifies one per predicted class. With too few calibration images none is certified, and
    # nothing is auto-labelled.
    max_auto_error: float = Field(0.02, gt=0.0, lt=0.5)
    guarantee_confidence: float = Field(0.95, ge=0.5, lt=1.0)
    guarantee: Literal["marginal", "per_class"] = "marginal"
    # An explicit threshold on the calibrated confidence instead of the certified one: the auto
    # labels then carry no guarantee, and every summary says so. Null: the certified threshold.
    confidence_threshold: Fraction | None = None
    # Images less like the training data than all but this share of calibration images (a
    # conformal p-value of the network's features) are out of distribution: never auto-labelled.
    ood_false_rejection: float = Field(0.01, gt=0.0, lt=0.5)
    # Each chunk of a run is compared with the calibration images (confidence, out-of-distribution
    # score, predicted classes, features); a difference at this family-wise level is drift.
    drift_significance: float = Field(0.01, gt=0.0, lt=0.5)
    on_drift: Literal["review", "warn"] = "review"  # review: a drifting chunk has no auto labels
    # This share of the auto labels also goes to review (reason audit): the doctors' answers test,
    # sequentially, that the error stays below max_auto_error, and stop auto-labelling if not.
    audit_fraction: Fraction = 0.02
    # Most uncertain first in the review queue: entropy of the probabilities, margin between the
    # two likeliest classes, or plain confidence.
    review_order: Literal["entropy", "margin", "confidence"] = "entropy"
    heatmaps: Literal["review", "all", "none"] = "review"  # Grad-CAM overlays for these rows
    batch_size: PositiveInt = 64
    chunk_size: PositiveInt = 512  # images per scoring task; results are saved after each
    # Files modified less than this many seconds ago may still be being copied in: they wait for
    # a later run (writers may also copy under a hidden .name and rename when done).
    settle_seconds: float = Field(10.0, ge=0.0)
    # Where the scoring tasks run: threads of this process, or a Dask cluster (dask_address, or
    # a local one when null) for inboxes larger than one machine.
    runner: Literal["local", "dask"] = "local"
    dask_address: str | None = None
    # How many held-out test images `medcls demo-inbox` copies into the inbox.
    demo_images: PositiveInt = 24


class ScheduleConfig(_Section):
    """Cron schedules of the Prefect deployments (kept apart so changing them retrains nothing)."""

    training: str = "0 2 * * 0"
    scoring: str = "*/15 * * * *"


class Params(_Section):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    seed: int = 42
    data: DataConfig = DataConfig()
    validation: ValidateConfig = Field(ValidateConfig(), alias="validate")
    preprocess: PreprocessConfig = PreprocessConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    registry: RegistryConfig = RegistryConfig()
    score: ScoreConfig = ScoreConfig()
    schedule: ScheduleConfig = ScheduleConfig()

    def flat(self) -> dict[str, object]:
        """Every value under its dotted params.yaml key, for experiment tracking."""
        return flatten(self.model_dump(by_alias=True, mode="json"))


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """Nested sections as dotted keys: {"train": {"epochs": 3}} -> {"train.epochs": 3}."""
    flat: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def load_params(path: Path | str = "params.yaml") -> Params:
    """Read and check `params.yaml`; any problem becomes one ConfigError line naming the key."""
    path = Path(path)
    return check_params(read_sections(path), path)


def read_sections(path: Path, missing: str = "file not found") -> dict:
    """A YAML file of params sections (params.yaml, a preset); a problem is one ConfigError line."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {missing}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return raw


def check_params(raw: dict, origin: Path) -> Params:
    """`raw` as typed params; a problem is one ConfigError line naming `origin` and the key."""
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {describe_errors(exc)}") from None


def describe_errors(exc: ValidationError) -> str:
    """Pydantic's errors as one line: `train.epochs: Input should be greater than 0 (got -1)`; the
    alternatives of a value that may also be a word are one message: `... greater than 0 or 'auto'`."""
    messages: dict[str, list[str]] = {}
    inputs: dict[str, object] = {}
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"] if not _is_union_member(part))
        if error["type"] == "extra_forbidden":
            messages[key] = ["unknown key"]
            continue
        message = error["msg"].removeprefix("Value error, ")
        alternatives = messages.setdefault(key, [])
        alternatives.append(message.removeprefix("Input should be ") if alternatives else message)
        inputs[key] = error.get("input")
    return "; ".join(
        f"{key}: " + " or ".join(alternatives) + (f" (got {inputs[key]!r})" if key in inputs else "")
        for key, alternatives in messages.items()
    )


def _is_union_member(part: str | int) -> bool:
    """Pydantic names which member of a union failed (`constrained-int`, `literal['auto']`)."""
    return isinstance(part, str) and ("-" in part or "[" in part)
