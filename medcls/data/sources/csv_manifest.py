"""`csv:<manifest.csv>`: columns `path,label[,patient_id,split]`, paths relative to the CSV's
folder (a path leaving that folder is refused)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from medcls.catalog import SPLITS
from medcls.config import DataConfig, DataSource
from medcls.data.sources.base import FileEntry, Source, existing_location, file_source, read_table


def open_csv_manifest(source: DataSource, cfg: DataConfig, seed: int, base_dir: Path) -> Source:
    path = existing_location(source, base_dir)
    return manifest_source(read_table(path, required={"path", "label"}), path.parent.resolve(), cfg)


def manifest_source(table: pd.DataFrame, root: Path, cfg: DataConfig, origin_prefix: str = "") -> Source:
    """The rows of a manifest table as a source; `origin_prefix` marks where they came from. Rows
    become entries as ingest reads them (a manifest of 300,000 rows costs nothing up front)."""
    labels = set(table["label"]) - {""}
    entries = (_entry(row._asdict(), root, origin_prefix) for row in table.itertuples(index=False))
    return file_source(labels, entries, cfg, size=len(table))


def _entry(row: dict, root: Path, origin_prefix: str) -> FileEntry:
    origin, label = origin_prefix + row["path"], row["label"] or None
    split = row.get("split") or None
    if "\x00" in row["path"]:
        return FileEntry(root, origin, label, rejection="path contains a NUL byte")
    target = Path(os.path.normpath(root / row["path"]))  # by name only: links are checked when read
    rejection = None
    if not target.is_relative_to(root):
        rejection = "path escapes the manifest's folder (refused)"
    elif label is None:
        rejection = "no label"
    elif split is not None and split not in SPLITS:
        rejection = f"unknown split {split!r} (expected {', '.join(SPLITS)})"
    return FileEntry(target, origin, label, row.get("patient_id") or None, split, rejection, within=root)
