"""The inbox as a scoring run sees it: which files to take, which to leave for later, which it
already knows.

- A file modified less than `score.settle_seconds` ago may still be being copied in: it is left
  for a later run (writers can also copy under a hidden name and rename when done: hidden files
  are never taken).
- A link that leads out of the inbox is refused (quarantined: the link moves, never its target).
- The index (`inbox_index.parquet`) remembers every file read, by its path, size and modification
  time, with the image ids it held, so a file that has not changed costs a `stat`, not a decode.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from medcls.support.files import write_bytes


@dataclass(frozen=True)
class InboxFile:
    path: Path
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class InboxScan:
    files: list[InboxFile]  # settled files inside the inbox, in path order
    settling: int  # modified too recently: left for a later run
    refused: list[tuple[Path, str]]  # (link, reason): links that leave the inbox


def scan_inbox(inbox: Path, settle_seconds: float) -> InboxScan:
    """Every file under `inbox` but hidden ones, without following links out of it."""
    root = os.path.realpath(inbox)
    settled_before = time.time_ns() - int(settle_seconds * 1e9)
    files, refused, settling = [], [], 0
    for folder, subfolders, names in os.walk(inbox):  # links to folders are listed, never entered
        links = [name for name in subfolders if os.path.islink(os.path.join(folder, name))]
        subfolders[:] = sorted(name for name in subfolders if not name.startswith(".") and name not in links)
        for name in sorted([*links, *names]):
            path = Path(folder, name)
            if name.startswith("."):
                continue
            if path.is_symlink() and not _inside(os.path.realpath(path), root):
                refused.append((path, "a link that leads out of the inbox"))
            elif name in links:
                continue  # a link to a folder inside the inbox: its files are reached where they are
            elif (status := _status(path)) is None:
                files.append(InboxFile(path, -1, -1))  # a broken link, a pipe: reading it says why
            elif status.st_mtime_ns > settled_before:
                settling += 1
            else:
                files.append(InboxFile(path, status.st_size, status.st_mtime_ns))
    return InboxScan(files, settling, refused)


def _status(path: Path) -> os.stat_result | None:
    """The file's status (through a link inside the inbox); None if it cannot be had (a broken
    link: reading it says why)."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status if stat.S_ISREG(status.st_mode) else None


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


@dataclass(frozen=True)
class Known:
    """What a file held when it was last read."""

    image_ids: list[str]
    unreadable: str  # why it could not be read (and could not be moved aside), else ""


class InboxIndex:
    """Files read before, keyed by (path relative to the inbox, size, modification time)."""

    def __init__(self, inbox: Path, entries: dict[tuple[bytes, int, int], Known]) -> None:
        self.inbox = inbox
        self.entries = entries
        self.changed = False

    @classmethod
    def load(cls, path: Path, inbox: Path) -> InboxIndex:
        if not path.exists():
            return cls(inbox, {})
        table = pq.read_table(path).to_pydict()
        keys = zip(table["path"], table["size"], table["mtime_ns"], strict=True)
        known = (Known(list(ids), reason) for ids, reason in zip(table["image_ids"], table["unreadable"], strict=True))
        return cls(inbox, dict(zip(keys, known, strict=True)))

    def known(self, file: InboxFile) -> Known | None:
        """What the file held, if it has not changed since it was read."""
        return self.entries.get(self._key(file))

    def record(self, file: InboxFile, image_ids: list[str], unreadable: str = "") -> None:
        self.entries[self._key(file)] = Known(image_ids, unreadable)
        self.changed = True

    def save(self, path: Path, present: list[InboxFile]) -> None:
        """Keep the entries of the files still in the inbox, atomically (when anything changed)."""
        keep = {self._key(file) for file in present} & self.entries.keys()
        if not self.changed and keep == self.entries.keys() and path.exists():
            return
        keys = sorted(keep)
        columns = {
            "path": pa.array([key[0] for key in keys], pa.binary()),
            "size": pa.array([key[1] for key in keys], pa.int64()),
            "mtime_ns": pa.array([key[2] for key in keys], pa.int64()),
            "image_ids": pa.array([self.entries[key].image_ids for key in keys], pa.list_(pa.string())),
            "unreadable": pa.array([self.entries[key].unreadable for key in keys], pa.string()),
        }
        sink = pa.BufferOutputStream()
        pq.write_table(pa.table(columns), sink)
        write_bytes(path, sink.getvalue().to_pybytes())

    def _key(self, file: InboxFile) -> tuple[bytes, int, int]:
        return os.fsencode(file.path.relative_to(self.inbox)), file.size, file.mtime_ns
