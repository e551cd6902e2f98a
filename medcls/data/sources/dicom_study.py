"""`dicom:<dir>`: every DICOM file under the folder, labelled by a CSV (`data.dicom.labels`)
keyed by `SOPInstanceUID` or `file`, optionally with `patient_id` and `split`."""

from __future__ import annotations

from pathlib import Path

from medcls.config import DataConfig, DataSource
from medcls.data.images.dicom import quiet_pydicom
from medcls.data.sources.base import FileEntry, Source, existing_location, file_source, read_table
from medcls.errors import ConfigError, DataError
from medcls.support.files import printable_path
from medcls.support.parallel import ordered_map


def open_dicom_study(source: DataSource, cfg: DataConfig, seed: int, base_dir: Path) -> Source:
    root = existing_location(source, base_dir)
    labels_path = root / cfg.dicom.labels
    if not labels_path.is_file():
        raise ConfigError(f"data.dicom.labels: {labels_path} not found (a CSV with label and SOPInstanceUID or file)")
    table = read_table(labels_path, required={"label"})
    key = next((column for column in ("SOPInstanceUID", "file") if column in table.columns), None)
    if key is None:
        raise DataError(f"{labels_path}: needs a SOPInstanceUID or a file column to find the images")
    rows = {row[key]: row for row in table.to_dict("records")}
    files = sorted(p for p in root.rglob("*") if not p.is_dir() and p != labels_path and not p.name.startswith("."))
    if key == "SOPInstanceUID":
        keys = list(ordered_map(_instance_uid, files))
    else:
        keys = [path.relative_to(root).as_posix() for path in files]
    entries = [_entry(path, printable_path(path.relative_to(root)), rows.get(k), cfg.dicom.labels)
               for path, k in zip(files, keys, strict=True)]  # fmt: skip
    unmatched = sorted(set(rows) - set(keys))
    entries += [FileEntry(labels_path, f"{cfg.dicom.labels}:{k}", None, rejection=f"in {cfg.dicom.labels}, not found")
                for k in unmatched]  # fmt: skip
    return file_source({row["label"] for row in rows.values() if row["label"]}, entries, cfg)


def _entry(path: Path, origin: str, row: dict | None, labels_name: str) -> FileEntry:
    if row is None:
        return FileEntry(path, origin, None, rejection=f"no label in {labels_name}")
    label = row["label"] or None
    return FileEntry(path, origin, label, row.get("patient_id") or None, row.get("split") or None,
                     None if label else "no label")  # fmt: skip


def _instance_uid(path: Path) -> str | None:
    """SOPInstanceUID from the header alone (None if unreadable: reading the file will say why)."""
    import pydicom

    with quiet_pydicom():
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
            return str(header.SOPInstanceUID)
        except Exception:
            return None
