"""The labelled pool (`data/reviewed`, filled by `medcls review import`) as a source ingest adds
to the configured one: doctor-reviewed images always, auto labels only above
`data.auto_label_min_confidence`."""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd

from medcls.catalog import LabelledPool
from medcls.config import DataConfig
from medcls.data.sources.base import Source, read_table
from medcls.data.sources.csv_manifest import manifest_source

REVIEWED_ORIGIN = "reviewed/"  # origins of doctor-reviewed images from the labelled pool
AUTO_ORIGIN = "auto-labelled/"  # origins of the pool's auto-labelled images


def reviewed_pool(pool_dir: Path, cfg: DataConfig) -> Source | None:
    """The labelled pool's images that may join training: every doctor-reviewed one, and auto
    labels at or above `data.auto_label_min_confidence` (none when it is null)."""
    pool = LabelledPool(pool_dir)
    if not pool.labels.is_file():
        return None
    table = read_table(pool.labels, required={"path", "label", "label_source", "confidence"})
    table = table.drop(columns=["patient_id"], errors="ignore")  # each image is its own patient
    threshold = cfg.auto_label_min_confidence
    confident = False if threshold is None else pd.to_numeric(table["confidence"], errors="coerce") >= threshold
    doctor, auto = table[table["label_source"] == "doctor"], table[(table["label_source"] == "auto") & confident]
    if doctor.empty and auto.empty:
        return None
    root = pool_dir.resolve()
    return _chained(manifest_source(doctor, root, cfg, REVIEWED_ORIGIN), manifest_source(auto, root, cfg, AUTO_ORIGIN))


def with_pool(source: Source, pool: Source | None) -> Source:
    """The source followed by the labelled pool's images."""
    return source if pool is None else _chained(source, pool)


def _chained(first: Source, second: Source) -> Source:
    labels = tuple(dict.fromkeys([*first.labels, *second.labels]))
    size = None if first.size is None or second.size is None else first.size + second.size
    return Source(labels, itertools.chain(first.tasks, second.tasks), size, first.details)
