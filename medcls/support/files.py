"""Files: atomic writes (a reader, or a crash, never sees a half-written file or folder), tables,
JSON, and paths printable whatever bytes their names hold."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd


def write_bytes(path: Path, data: bytes, durable: bool = True) -> Path:
    """Write to a temporary file beside `path` and rename it over `path`: a reader never sees half
    a file. Durable (the default): the file and then its folder are flushed to disk, so it
    survives a crash too; files that can be made again (heat maps, copies) skip that cost. The
    file gets the ordinary mode, 0644."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            os.fchmod(stream.fileno(), 0o644)  # mkstemp makes it 0600
            stream.write(data)
            if durable:
                stream.flush()
                os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    if durable:
        _sync_folder(path.parent)
    return path


def _sync_folder(folder: Path) -> None:
    """Flush the folder's entries (the rename into it) to disk."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_json(path: Path, payload: object) -> Path:
    return write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def read_csv_table(path: Path, text_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """A CSV table medcls wrote (empty if there is none yet); `text_columns` stay strings (a model
    version "10" must not become the number 10), empty cells stay empty strings."""
    if not path.exists():
        return pd.DataFrame()
    return pd.read_csv(path, dtype=dict.fromkeys(text_columns, str), keep_default_na=False)


def printable_path(path: Path | str) -> str:
    """The path as text that any file or table can hold (undecodable name bytes as \\xNN)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def write_table(path: Path, frame: pd.DataFrame) -> Path:
    """Parquet or CSV by the file's suffix, written atomically."""
    data = frame.to_parquet(index=False) if path.suffix == ".parquet" else frame.to_csv(index=False).encode()
    return write_bytes(path, data)


@contextmanager
def staged_dir(target: Path) -> Iterator[Path]:
    """Yield an empty folder beside `target`; on success it replaces `target` in one rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.staging-"))
    try:
        yield staging
        if target.exists():
            retired = staging.with_name(staging.name.replace("staging", "retired"))
            os.replace(target, retired)
            os.replace(staging, target)
            shutil.rmtree(retired)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
