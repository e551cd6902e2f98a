"""A demo inbox: held-out test images copied in as if they had just arrived, for a first scoring run."""

from __future__ import annotations

import shutil
from pathlib import Path

from medcls.catalog import RawData
from medcls.data.manifest import load_manifest


def make_demo_inbox(raw_dir: Path, inbox: Path, count: int, seed: int) -> list[Path]:
    """Copy `count` test images of `raw_dir` into `inbox`, under neutral names."""
    manifest = load_manifest(raw_dir)
    test = manifest[manifest["split"] == "test"]
    chosen = test.sample(n=min(count, len(test)), random_state=seed)
    inbox.mkdir(parents=True, exist_ok=True)
    raw = RawData(raw_dir)
    return [
        Path(shutil.copy2(raw.image(row.file), inbox / f"demo-{number:04d}{Path(row.file).suffix}"))
        for number, row in enumerate(chosen.itertuples())
    ]
