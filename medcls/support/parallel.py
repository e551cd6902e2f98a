"""Parallel map on threads, results in input order, bounded memory.

Decoding, hashing, resizing and file I/O release the GIL (OpenCV, hashlib, zlib, the OS), so
threads use every core without copying images between processes. (Worker processes were
measured slower here: each spends about a second importing the stack.)
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from itertools import islice
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
BATCH = 16  # items per job: amortises the hand-over to a worker


def worker_count(requested: int = 0) -> int:
    """`requested` threads, or one per core when 0."""
    return requested or os.cpu_count() or 1


def ordered_map(function: Callable[[Item], Result], items: Iterable[Item], workers: int = 0) -> Iterator[Result]:
    """`function` over `items` in batches on a thread pool; a few batches per worker wait in memory."""
    workers = worker_count(workers)
    pending: deque[Future[list[Result]]] = deque()
    with ThreadPoolExecutor(workers) as pool:
        for batch in batched(items, BATCH):
            pending.append(pool.submit(_apply, function, batch))
            if len(pending) >= 2 * workers:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()


@contextmanager
def background(workers: int) -> Iterator[Callable[..., None]]:
    """A `submit(function, *args)` running jobs on threads beside the caller; leaving the block
    waits for every job and raises the first one's failure (none is lost silently)."""
    futures: list[Future] = []
    with ThreadPoolExecutor(workers) as pool:
        yield lambda function, *args: futures.append(pool.submit(function, *args))
    for future in futures:
        future.result()


def batched(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    """Consecutive lists of `size` items (the last one shorter), taken as they are needed."""
    remaining = iter(items)
    while batch := list(islice(remaining, size)):
        yield batch


def _apply(function: Callable[[Item], Result], batch: list[Item]) -> list[Result]:
    return [function(item) for item in batch]
