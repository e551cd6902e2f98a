"""Readers of `data.source`, one module per scheme, found through `READERS`.

A reader lists the labels the source declares (a class folder without images included) and
yields tasks, each turning one entry (a file, an array) into images or rejections; ingest runs
the tasks on all cores. Nothing is ever dropped without a rejection saying why.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from medcls.config import DataConfig, DataSource
from medcls.data.sources.base import Rejected, Source, SourceImage, SourceTask
from medcls.data.sources.csv_manifest import open_csv_manifest
from medcls.data.sources.dicom_study import open_dicom_study
from medcls.data.sources.folder import open_folder
from medcls.data.sources.medmnist import open_medmnist
from medcls.data.sources.pool import AUTO_ORIGIN, REVIEWED_ORIGIN, reviewed_pool, with_pool
from medcls.data.sources.synthetic import open_synthetic

# scheme -> reader(source, data config, seed, folder that relative locations start from)
Reader = Callable[[DataSource, DataConfig, int, Path], Source]
READERS: dict[str, Reader] = {
    "synthetic": open_synthetic,
    "medmnist": open_medmnist,
    "folder": open_folder,
    "csv": open_csv_manifest,
    "dicom": open_dicom_study,
}


def open_source(cfg: DataConfig, seed: int, base_dir: Path) -> Source:
    """The source `cfg.source` names, ready to be read."""
    source = cfg.parsed_source
    return READERS[source.scheme](source, cfg, seed, base_dir)


__all__ = [
    "AUTO_ORIGIN",
    "READERS",
    "REVIEWED_ORIGIN",
    "Rejected",
    "Source",
    "SourceImage",
    "SourceTask",
    "open_source",
    "reviewed_pool",
    "with_pool",
]
