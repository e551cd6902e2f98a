"""`csv:<manifest.csv>`: columns `path,label[,patient_id,split]`, paths relative to the CSV's
folder (a path leaving that folder is refused)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from medcls.catalog import SPLITS
from medcls.config import DataConfig, DataSource
from medcls.data.sources.base import FileEntry, Source, existing_location, file_source, read_table


def open_csv_manifest(source: DataSource, cfg: DataConfig, seed: int, base_dir: Path) -> Source:
    path = existing_location(source, base_dir)
    return manifest_source(read_table(path, required={"path", "label"}), path.parent.resolve(), cfg)


def manifest_source(table: pd.DataFrame, root: Path, cfg: DataConfig, origin_prefix: str = "") -> Source:
    """The rows of a manifest table as a source; `origin_prefix` marks where they came from."""
    records = table.to_dict("records")
    entries = [_entry(row, root, origin_prefix) for row in records]
    return file_source({row["label"] for row in records if row["label"]}, entries, cfg)


def _entry(row: dict, root: Path, origin_prefix: str) -> FileEntry:
    origin, label = origin_prefix + row["path"], row["label"] or None
    target = (root / row["path"]).resolve()
    split = row.get("split") or None
    rejection = None
    if not target.is_relative_to(root):
        rejection = "path escapes the manifest's folder (refused)"
    elif label is None:
        rejection = "no label"
    elif split is not None and split not in SPLITS:
        rejection = f"unknown split {split!r} (expected {', '.join(SPLITS)})"
    return FileEntry(target, origin, label, row.get("patient_id") or None, split, rejection)
