"""Reading what ingest wrote to `data/raw`: the manifest (one row per image) and the data set's
facts (`dataset.json`: class names, counts, DICOM conversion)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from medcls.catalog import RawData
from medcls.errors import DataError
from medcls.support.files import read_json


def load_manifest(raw_dir: Path) -> pd.DataFrame:
    path = RawData(raw_dir).manifest
    if not path.exists():
        raise DataError(f"{path}: no manifest; run `medcls ingest` first")
    return pd.read_parquet(path)


def load_dataset_facts(raw_dir: Path) -> dict:
    path = RawData(raw_dir).dataset
    if not path.exists():
        raise DataError(f"{path}: missing; run `medcls ingest` first")
    return read_json(path)
