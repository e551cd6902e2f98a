"""Inbox files that cannot be scored are moved aside, never deleted, with the reason recorded."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from medcls.catalog import ScoringOutputs
from medcls.support.files import printable_path, read_csv_table, write_table


def quarantine_files(rejected: list[tuple[Path, str]], out_dir: Path) -> None:
    """Move (file, reason) pairs to `quarantine/`, recording why before moving: a run killed in
    between leaves the file in the inbox with a record of a move that never happened, and the
    next run's record for that file replaces it."""
    if not rejected:
        return
    outputs = ScoringOutputs(out_dir)
    outputs.quarantined.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    stamp = f"{now:%Y%m%dT%H%M%S%f}"
    moves = [(path, outputs.quarantined / f"{stamp}-{number}-{path.name}") for number, (path, _) in enumerate(rejected)]
    records = pd.DataFrame(
        {
            "path": [printable_path(path) for path, _ in moves],
            "moved_to": [printable_path(target) for _, target in moves],
            "reason": [reason for _, reason in rejected],
            "quarantined_at": now.isoformat(timespec="seconds"),
        }
    )
    earlier = read_csv_table(outputs.quarantine)
    if len(earlier):
        moved = earlier["moved_to"].map(lambda target: Path(target).exists())
        never_moved = earlier["path"].isin(records["path"]) & ~moved
        records = pd.concat([earlier[~never_moved], records], ignore_index=True)
    write_table(outputs.quarantine, records)
    for path, target in moves:
        shutil.move(path, target)
