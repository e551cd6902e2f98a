"""Data versions as DVC records them, so a model can be traced to the data it was trained on."""

from __future__ import annotations

import tempfile
from pathlib import Path


def data_version(path: Path) -> str:
    """DVC's content hash of a file or folder (`<md5>.dir` for folders), as `dvc.lock` records it."""
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    filesystem = LocalFileSystem()
    with tempfile.TemporaryDirectory() as scratch:
        _, _, tree = build(HashFileDB(filesystem, scratch), str(path), filesystem, "md5", dry_run=True)
    return tree.hash_info.value
