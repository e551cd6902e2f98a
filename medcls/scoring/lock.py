"""One scoring run per output folder at a time."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from medcls.catalog import ScoringOutputs
from medcls.errors import DataError, ScoringBusy


@contextmanager
def scoring_lock(out_dir: Path) -> Iterator[None]:
    """Hold the output folder's lock, or fail at once naming the holder's pid. The kernel releases
    the lock when its holder exits, also when it is killed, so a crashed run never blocks the next."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = ScoringOutputs(out_dir).lock
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:  # O_NOFOLLOW: a link planted there could make the lock write anywhere
        why = "is a link (refused)" if path.is_symlink() else f"cannot be opened ({exc.strerror})"
        raise DataError(f"{path}: the scoring lock {why}") from None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "?"
            raise ScoringBusy(
                f"{out_dir}: another scoring run (pid {holder}) is writing here; it will score the inbox"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(descriptor)  # releases the lock
