"""Progress: counted as the consumer takes items, shown as log lines unless a reporter is chosen."""

from __future__ import annotations

import logging
from contextlib import contextmanager

import pytest

from medcls.support.progress import LogReporter, describe_rate, reporting, track


class Recorder:
    """A reporter that keeps what it was told."""

    def __init__(self) -> None:
        self.tasks: list[tuple[str, int | None, str]] = []
        self.counts: list[int] = []

    @contextmanager
    def task(self, description: str, total: int | None, unit: str):
        self.tasks.append((description, total, unit))
        yield self.counts.append


def test_track_yields_every_item_and_counts_it_after_use():
    recorder = Recorder()
    with reporting(recorder):
        taken = []
        for item in track(["a", "bb", "ccc"], "work", total=3, unit="files", weight=len):
            taken.append((item, sum(recorder.counts)))
    assert taken == [("a", 0), ("bb", 1), ("ccc", 3)]  # an item counts once the consumer is done with it
    assert recorder.counts == [1, 2, 3] and recorder.tasks == [("work", 3, "files")]


def test_without_a_chosen_reporter_a_log_line_ends_each_loop(caplog):
    with caplog.at_level(logging.INFO, logger="medcls.support.progress"):
        assert list(track(range(5), "preprocess train")) == [0, 1, 2, 3, 4]
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith("preprocess train: 5 images in ")


def test_log_lines_come_every_interval_with_rate_and_time_left(caplog, monkeypatch):
    clock = iter(float(second) for second in range(100))
    monkeypatch.setattr("medcls.support.progress.time.monotonic", lambda: next(clock))
    with caplog.at_level(logging.INFO, logger="medcls.support.progress"), reporting(LogReporter(interval=2.0)):
        list(track(range(6), "scoring", total=6, unit="files"))
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0] == "scoring: 2 of 6 files (1/s, about 4.0 s left)"
    assert messages[-1].startswith("scoring: 6 files in ")


@pytest.mark.parametrize(
    ("done", "total", "seconds", "expected"),
    [
        (1200, 5000, 2.0, "1,200 of 5,000 images (600/s, about 6.3 s left)"),
        (300, None, 3.0, "300 images (100/s)"),
        (0, 10, 1.0, "0 of 10 images (0/s)"),
        (100, 100_000, 10.0, "100 of 100,000 images (10/s, about 2 h 46 min left)"),
    ],
)
def test_rates_read_as_a_person_would_say_them(done, total, seconds, expected):
    assert describe_rate(done, total, "images", seconds) == expected
