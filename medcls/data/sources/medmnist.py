"""`medmnist:<file.npz or name>`: MedMNIST v2 (28x28) data sets, the official `.npz` files read
locally or downloaded by name.

A download is checked against the MD5 the MedMNIST authors publish, and only a verified file is
kept. Multi-label (ChestMNIST) and 3D sets are not single-label image classification: refused.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medcls.catalog import SPLITS, ProjectPaths
from medcls.config import DataConfig, DataSource
from medcls.data.images import ImageLimits
from medcls.data.sources.base import Source, array_task, existing_location
from medcls.errors import ConfigError, DataError

OFFICIAL_MIRROR = "https://zenodo.org/record/6496656/files"


@dataclass(frozen=True)
class MedMnistSet:
    md5: str
    class_names: tuple[str, ...]


_ORGANS = ("bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver", "lung-left",
           "lung-right", "pancreas", "spleen")  # fmt: skip
# From the MedMNIST v2 release (medmnist/info.py, version 2.1.0): file MD5 and label names.
DATASETS = {
    "pathmnist": MedMnistSet("a8b06965200029087d5bd730944a56c1", (
        "adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle", "normal colon mucosa",
        "cancer-associated stroma", "colorectal adenocarcinoma epithelium")),
    "dermamnist": MedMnistSet("0744692d530f8e62ec473284d019b0c7", (
        "actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma", "benign keratosis-like lesions",
        "dermatofibroma", "melanoma", "melanocytic nevi", "vascular lesions")),
    "octmnist": MedMnistSet("c68d92d5b585d8d81f7112f81e2d0842", (
        "choroidal neovascularization", "diabetic macular edema", "drusen", "normal")),
    "pneumoniamnist": MedMnistSet("28209eda62fecd6e6a2d98b1501bb15f", ("normal", "pneumonia")),
    "retinamnist": MedMnistSet("bd4c0672f1bba3e3a89f0e4e876791e4", ("0", "1", "2", "3", "4")),
    "breastmnist": MedMnistSet("750601b1f35ba3300ea97c75c52ff8f6", ("malignant", "normal, benign")),
    "bloodmnist": MedMnistSet("7053d0359d879ad8a5505303e11de1dc", (
        "basophil", "eosinophil", "erythroblast",
        "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)", "lymphocyte", "monocyte",
        "neutrophil", "platelet")),
    "tissuemnist": MedMnistSet("ebe78ee8b05294063de985d821c1c34b", (
        "Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule", "Glomerular endothelial cells",
        "Interstitial endothelial cells", "Leukocytes", "Podocytes", "Proximal Tubule Segments",
        "Thick Ascending Limb")),
    "organamnist": MedMnistSet("866b832ed4eeba67bfb9edee1d5544e6", _ORGANS),
    "organcmnist": MedMnistSet("0afa5834fb105f7705a7d93372119a21", _ORGANS),
    "organsmnist": MedMnistSet("e5c39f1af030238290b9557d9503af9d", _ORGANS),
}  # fmt: skip


@dataclass(frozen=True)
class NpzImage:
    split: str
    index: int
    label: int
    pixels: np.ndarray


def open_medmnist(source: DataSource, cfg: DataConfig, seed: int, base_dir: Path) -> Source:
    """The file's images with their official splits; the class names of the official sets are known."""
    if is_dataset_name(source.location):
        path = fetch(source.location, ProjectPaths.under(base_dir).downloads, cfg.download_mirror)
    else:
        path = existing_location(source, base_dir)
    check_npz(path, ImageLimits.of(cfg))
    official = DATASETS.get(path.stem)
    names = cfg.class_names or (list(official.class_names) if official else None)
    md5 = file_md5(path)
    details = {"file_md5": md5, "official_file": official is not None and md5 == official.md5}
    tasks = (
        array_task(f"{path.name}:{entry.split}[{entry.index}]", _class_name(entry.label, names, path), None,
                   entry.split, entry.pixels)
        for entry in read_npz(path)
    )  # fmt: skip
    return Source(tuple(names or ()), tasks, count_images(path), details)


def _class_name(label: int, names: list[str] | None, path: Path) -> str:
    if names is None:
        return str(label)
    if not 0 <= label < len(names):
        raise ConfigError(f"data.class_names: {path} has label {label}, beyond the {len(names)} names")
    return names[label]


def is_dataset_name(location: str) -> bool:
    """`medmnist:bloodmnist` names a data set; anything with a suffix or a folder is a path."""
    return "/" not in location and not location.endswith(".npz")


def fetch(name: str, target_dir: Path, mirror: str | None) -> Path:
    """The verified `<name>.npz` in `target_dir`, downloaded from `mirror` (or Zenodo) if needed."""
    if name not in DATASETS:
        raise ConfigError(f"data.source: medmnist:{name}: unknown data set (known: {', '.join(DATASETS)})")
    target = target_dir / f"{name}.npz"
    expected = DATASETS[name].md5
    if target.exists() and file_md5(target) == expected:
        return target
    url = f"{(mirror or OFFICIAL_MIRROR).rstrip('/')}/{name}.npz?download=1"
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target_dir, prefix=f".{name}.", delete=False) as partial:
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                shutil.copyfileobj(response, partial)
        except (urllib.error.URLError, OSError) as exc:
            Path(partial.name).unlink(missing_ok=True)
            raise DataError(f"cannot download {url}: {getattr(exc, 'reason', exc)}") from None
    got = file_md5(Path(partial.name))
    if got != expected:
        Path(partial.name).unlink()
        raise DataError(f"{url}: MD5 {got} is not the published {expected}; file discarded")
    Path(partial.name).replace(target)
    return target


def read_npz(path: Path) -> Iterator[NpzImage]:
    """Every image of `{split}_images` with its label from `{split}_labels`."""
    with _open_npz(path) as archive:
        for split in SPLITS:
            if f"{split}_images" not in archive:
                continue
            images, labels = archive[f"{split}_images"], archive[f"{split}_labels"]
            if labels.ndim == 2 and labels.shape[1] != 1:
                raise DataError(f"{path}: multi-label data ({labels.shape[1]} labels) is not supported")
            for index, (pixels, label) in enumerate(zip(images, labels.reshape(-1), strict=True)):
                yield NpzImage(split, index, int(label), pixels)


_MEMBERS = ("images", "labels")


def check_npz(path: Path, limits: ImageLimits) -> None:
    """Refuse, from the zip directory and the arrays' headers alone, an .npz whose members would
    inflate past `limits.max_file_bytes` or hold anything but images within the limits and one
    integer label per image; nothing is loaded before that."""
    try:
        with zipfile.ZipFile(path) as archive:
            for split in SPLITS:
                images, labels = (
                    _member_header(archive, f"{split}_{kind}.npy", limits) for kind in ("images", "labels")
                )
                if images is not None or labels is not None:
                    _check_split(path, split, images, labels, limits)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz file: {exc}") from None


def _member_header(archive: zipfile.ZipFile, name: str, limits: ImageLimits) -> tuple | None:
    """(shape, dtype) of one .npy member, or None if it is absent."""
    if name not in archive.namelist():
        return None
    declared = archive.getinfo(name).file_size
    if declared > limits.max_file_bytes:
        raise ValueError(
            f"{name} inflates to {declared >> 20} MB (data.max_file_megabytes is {limits.max_file_bytes >> 20})"
        )
    with archive.open(name) as member:
        version = np.lib.format.read_magic(member)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(member)
    return shape, dtype


def _check_split(path: Path, split: str, images: tuple | None, labels: tuple | None, limits: ImageLimits) -> None:
    if images is None or labels is None:
        raise ValueError(f"{split}_images and {split}_labels come in pairs")
    (shape, dtype), (label_shape, label_dtype) = images, labels
    if dtype not in (np.uint8, np.uint16) or len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] not in (1, 3)):
        raise ValueError(f"{split}_images must be N x H x W (x 1 or 3) 8- or 16-bit images, not {shape} {dtype}")
    height, width = shape[1:3]
    if height * width > limits.max_pixels or min(height, width) < limits.min_size:
        raise ValueError(f"{split}_images are {width}x{height} px, outside data.min_image_size/max_image_pixels")
    if not np.issubdtype(label_dtype, np.integer) or label_shape[:1] != shape[:1] or len(label_shape) > 2:
        raise ValueError(
            f"{split}_labels must be one integer label per image ({shape[0]}), not {label_shape} {label_dtype}"
        )


def count_images(path: Path) -> int:
    """How many images the file holds (from its label arrays, which are small)."""
    with _open_npz(path) as archive:
        return sum(len(archive[f"{split}_labels"]) for split in SPLITS if f"{split}_labels" in archive)


def _open_npz(path: Path):
    try:
        return np.load(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz file: {exc}") from None


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
