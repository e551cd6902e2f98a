"""Inbox files that cannot be scored are moved aside, never deleted, with the reason recorded.

A quarantined file is named by a time stamp and a short hash of its path (whatever the length or
bytes of its name), so the move itself cannot fail on the name. When a move fails anyway (a
read-only inbox), the failure is recorded and logged, the file stays where it is, and scoring goes
on. A file that changes in quarantine (a copy that was still being written) is moved back into
the inbox and read again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from medcls.catalog import ScoringOutputs
from medcls.support.files import printable_path, read_csv_table, write_table

COLUMNS = ["path", "moved_to", "reason", "quarantined_at", "size", "mtime_ns", "status"]
MOVED, MOVING = "moved", "moving"
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,10}")
log = logging.getLogger(__name__)


def quarantine_files(rejected: list[tuple[Path, str]], out_dir: Path) -> list[Path]:
    """Move each (file, reason) to `quarantine/`, recording why before moving (a run killed in
    between leaves a record of a move that never happened, which the next run's record for that
    file replaces). Returns the files that could not be moved."""
    if not rejected:
        return []
    outputs = ScoringOutputs(out_dir)
    now = datetime.now(UTC)
    targets = [outputs.quarantined / _quarantine_name(path, now) for path, _ in rejected]
    records = pd.DataFrame(
        {
            "path": [printable_path(path) for path, _ in rejected],
            "moved_to": [printable_path(target) for target in targets],
            "reason": [reason for _, reason in rejected],
            "quarantined_at": now.isoformat(timespec="seconds"),
            "size": "",
            "mtime_ns": "",
            "status": MOVING,
        }
    )
    earlier = _earlier_records(outputs, records["path"])
    write_table(outputs.quarantine, pd.concat([earlier, records], ignore_index=True))
    moves = zip(rejected, targets, records.to_dict("records"), strict=True)
    records = pd.DataFrame([row | _move(path, target) for (path, _), target, row in moves], columns=COLUMNS)
    write_table(outputs.quarantine, pd.concat([earlier, records], ignore_index=True))
    return [path for (path, _), status in zip(rejected, records["status"], strict=True) if status != MOVED]


def readmit_changed(out_dir: Path, inbox: Path) -> int:
    """Move quarantined files that changed since they were moved (a writer was still writing
    them) back into the inbox, as `readmitted-<name>`; returns how many."""
    outputs = ScoringOutputs(out_dir)
    records = read_csv_table(outputs.quarantine, tuple(COLUMNS))
    if records.empty or "status" not in records:
        return 0
    changed = [index for index, row in records.iterrows() if row["status"] == MOVED and _changed(row)]
    for index in changed:
        moved = Path(records.at[index, "moved_to"])
        shutil.move(moved, inbox / f"readmitted-{moved.name}")
        records.at[index, "status"] = f"re-admitted as readmitted-{moved.name} at {datetime.now(UTC):%Y-%m-%dT%H:%M:%S}"
    if changed:
        write_table(outputs.quarantine, records)
    return len(changed)


def _quarantine_name(path: Path, now: datetime) -> str:
    digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:16]
    suffix = path.suffix if _SUFFIX.fullmatch(path.suffix) else ""
    return f"{now:%Y%m%dT%H%M%S%f}-{digest}{suffix}"


def _move(path: Path, target: Path) -> dict:
    """The outcome of one move, as the record's status, size and modification time."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)
        moved = target.lstat()
    except OSError as exc:
        log.warning("could not quarantine %s: %s; it stays in the inbox", printable_path(path), exc.strerror or exc)
        return {"status": f"not moved: {exc.strerror or type(exc).__name__}", "moved_to": ""}
    return {"status": MOVED, "size": moved.st_size, "mtime_ns": moved.st_mtime_ns}


def _earlier_records(outputs: ScoringOutputs, paths: pd.Series) -> pd.DataFrame:
    """The records so far, less those of files quarantined again now that were never moved."""
    earlier = read_csv_table(outputs.quarantine, tuple(COLUMNS))
    if earlier.empty:
        return pd.DataFrame(columns=COLUMNS)
    earlier = earlier.reindex(columns=COLUMNS, fill_value="")
    never_moved = earlier["moved_to"].map(lambda target: not target or not Path(target).exists())
    return earlier[~(earlier["path"].isin(paths) & never_moved)]


def _changed(record: pd.Series) -> bool:
    try:
        now = Path(record["moved_to"]).lstat()
    except OSError:
        return False
    return (str(now.st_size), str(now.st_mtime_ns)) != (str(record["size"]), str(record["mtime_ns"]))
