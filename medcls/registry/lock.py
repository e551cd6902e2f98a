"""One registry change at a time: registrations and promotions of a model read production,
decide and move the alias holding this lock, so no decision is taken on a production that moved
meanwhile and the production history is never rewritten from a stale copy.

The lock is a file beside a local tracking store (sqlite, as medcls sets up by default), shared by
every process that uses that store. With a remote tracking server it lives in this machine's
temporary folder and serialises this machine's processes only; `versions` re-reads the alias
before moving it, which narrows what is left of that race.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from medcls.errors import RegistryBusy
from medcls.support.tracking import local_store_folder


@contextmanager
def registry_lock(model_name: str, timeout: float = 600.0) -> Iterator[None]:
    """Wait (up to `timeout` seconds) for the model's registry lock, then hold it."""
    path = _lock_path(model_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while not _locked(descriptor):
            if time.monotonic() > deadline:
                raise RegistryBusy(
                    f"model '{model_name}': another registration or promotion held {path} for {timeout:.0f} s"
                )
            time.sleep(0.1)
        yield
    finally:
        os.close(descriptor)  # releases the lock, also when its holder is killed


def _locked(descriptor: int) -> bool:
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _lock_path(model_name: str) -> Path:
    import mlflow

    uri = mlflow.get_tracking_uri()
    key = hashlib.sha256(f"{uri}|{model_name}".encode()).hexdigest()[:16]
    folder = local_store_folder() or Path(tempfile.gettempdir()) / "medcls-registry-locks"
    return folder / f".registry-{key}.lock"
