"""`folder:<dir>`: one subfolder per class, optionally under `train/`, `val/`, `test/`.

Files outside class folders, in hidden folders or beside the split folders are listed as
rejections, never skipped.
"""

from __future__ import annotations

from pathlib import Path

from medcls.catalog import SPLITS
from medcls.config import DataConfig, DataSource
from medcls.data.sources.base import FileEntry, Source, existing_location, file_source
from medcls.errors import DataError
from medcls.support.files import printable_path


def open_folder(source: DataSource, cfg: DataConfig, seed: int, base_dir: Path) -> Source:
    """`root/<class>/**` or `root/<split>/<class>/**`."""
    root = existing_location(source, base_dir)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    split_dirs = [root / split for split in SPLITS if (root / split).is_dir()]
    entries, labels = [], set()
    for split_dir in split_dirs or [root]:
        split = split_dir.name if split_dirs else None
        for path in sorted(split_dir.iterdir()):
            if not path.is_dir():
                entries.append(
                    FileEntry(path, printable_path(path.relative_to(root)), None, rejection="not in a class folder")
                )
            elif path.name.startswith("."):
                entries += _files_under(path, root, None, rejection=f"in a hidden folder ({path.name})")
            else:
                labels.add(path.name)
                entries += _files_under(path, root, path.name, split)
    for path in sorted(set(root.iterdir()) - set(split_dirs)) if split_dirs else []:
        entries += _files_under(path, root, None, rejection="outside the train/val/test folders")
    if not labels:
        raise DataError(f"{root}: no class folders found (expected <class>/ or <split>/<class>/ folders)")
    return file_source(labels, entries, cfg)


def _files_under(folder: Path, root: Path, label: str | None, split=None, rejection=None) -> list[FileEntry]:
    """Every file in `folder` (or `folder` itself if it is a file); broken links too: reported."""
    files = sorted(path for path in folder.rglob("*") if not path.is_dir()) if folder.is_dir() else [folder]
    return [
        FileEntry(path, printable_path(path.relative_to(root)), label, split=split, rejection=rejection, within=root)
        for path in files
    ]
