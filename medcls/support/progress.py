"""Progress of long loops (ingest, preprocess, scoring, the label audit) without tying them to a UI.

Stages wrap their loops in `track`; the entry point chooses how progress shows: a bar with rate
and ETA on a terminal (`TerminalReporter`, Rich), else a log line every `LogReporter.interval`
seconds and one at the end (the default: under DVC, Prefect or CI nothing redraws a line).
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol, TypeVar

Item = TypeVar("Item")
Advance = Callable[[int], None]
log = logging.getLogger(__name__)


class Reporter(Protocol):
    def task(self, description: str, total: int | None, unit: str) -> AbstractContextManager[Advance]:
        """A context for one loop, giving the function that counts what is done."""


def track(
    items: Iterable[Item],
    description: str,
    total: int | None = None,
    unit: str = "images",
    weight: Callable[[Item], int] | None = None,
) -> Iterator[Item]:
    """Yield `items`, counting each (or `weight(item)`) once the consumer has taken it."""
    with (_reporter.get() or _DEFAULT_REPORTER).task(description, total, unit) as advance:
        for item in items:
            yield item
            advance(weight(item) if weight else 1)


@contextmanager
def reporting(reporter: Reporter) -> Iterator[None]:
    """Show the progress of everything tracked inside this block with `reporter`."""
    token = _reporter.set(reporter)
    try:
        yield
    finally:
        _reporter.reset(token)


class LogReporter:
    """A log line (logger `medcls.support.progress`, INFO) every `interval` seconds while a loop
    runs, and one when it ends."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval

    @contextmanager
    def task(self, description: str, total: int | None, unit: str) -> Iterator[Advance]:
        started = last = time.monotonic()
        done = 0

        def advance(count: int) -> None:
            nonlocal done, last
            done += count
            now = time.monotonic()
            if now - last >= self.interval:
                last = now
                log.info("%s: %s", description, describe_rate(done, total, unit, now - started))

        yield advance
        seconds = time.monotonic() - started
        log.info("%s: %s %s in %s (%s/s)", description, f"{done:,}", unit, _duration(seconds), _rate(done, seconds))


class TerminalReporter:
    """A Rich progress bar per loop, on standard error: done of total, rate, time left."""

    @contextmanager
    def task(self, description: str, total: int | None, unit: str) -> Iterator[Advance]:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        class Rate(ProgressColumn):
            def render(self, task) -> Text:
                return Text(f"{task.speed:,.0f} {unit}/s" if task.speed else f"- {unit}/s", style="progress.data.speed")

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            Rate(),
            TimeRemainingColumn(elapsed_when_finished=True),  # time left; when done, time taken
        )
        with Progress(*columns, console=Console(stderr=True), speed_estimate_period=10) as bars:
            bar = bars.add_task(description, total=total)
            yield lambda count: bars.advance(bar, count)


def describe_rate(done: int, total: int | None, unit: str, seconds: float) -> str:
    """`1,200 of 5,000 images (600/s, about 6 s left)`."""
    rate = done / seconds if seconds > 0 else 0.0
    if total is None:
        return f"{done:,} {unit} ({_rate(done, seconds)}/s)"
    left = f", about {_duration((total - done) / rate)} left" if rate > 0 else ""
    return f"{done:,} of {total:,} {unit} ({_rate(done, seconds)}/s{left})"


def _rate(done: int, seconds: float) -> str:
    return f"{done / seconds:,.0f}" if seconds > 0 else "-"


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


_DEFAULT_REPORTER = LogReporter()
_reporter: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar("medcls_progress", default=None)
