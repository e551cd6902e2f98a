"""Ingest + preprocess throughput: medcls's two stages against a plain single-process
`cv2.imread` loop doing the same work per image, side by side in one run.

The same work: read and decode every file, hash its pixels, compute its statistics, store a copy,
and prepare it for the network (same `prepare_image`). medcls also writes the manifest, finds
duplicates, splits by patient and decodes each image a second time in its preprocess stage.

    .venv/bin/python bench/ingest.py [--data ../shared/data/chest_xray] [--size 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from medcls.config import DataConfig, PreprocessConfig
from medcls.data.images.pixels import describe_image, gray_if_neutral, image_id
from medcls.data.ingest import ingest_data
from medcls.data.preprocess import prepare_image, preprocess_data

REPO = Path(__file__).resolve().parents[1]


def run_medcls(source: Path, workdir: Path, size: int) -> None:
    ingest_data(DataConfig(source=f"folder:{source}"), workdir / "raw", seed=42, base_dir=workdir)
    preprocess_data(PreprocessConfig(image_size=size), workdir / "raw", workdir / "processed")


def run_plain_loop(source: Path, workdir: Path, size: int) -> None:
    """What one writes first: every step in turn, one image at a time."""
    config = PreprocessConfig(image_size=size, channels=1)
    (workdir / "copies").mkdir(parents=True)
    prepared = []
    cv2.setNumThreads(-1)  # OpenCV's default thread pool, as a plain script has it (medcls sets 1)
    try:
        _plain_loop(source, workdir, config, prepared)
    finally:
        cv2.setNumThreads(1)
    np.save(workdir / "prepared.npy", np.stack(prepared))


def _plain_loop(source: Path, workdir: Path, config: PreprocessConfig, prepared: list[np.ndarray]) -> None:
    for path in sorted(source.rglob("*.jpeg")):
        pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if pixels.ndim == 3:
            pixels = gray_if_neutral(cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB))
        digest = image_id(pixels)
        describe_image(pixels)
        shutil.copyfile(path, workdir / "copies" / f"{digest}{path.suffix}")
        prepared.append(prepare_image(pixels, config))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "chest_xray")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    files = len(list(args.data.rglob("*.jpeg")))
    rates: dict[str, list[float]] = {"medcls (ingest + preprocess)": [], "plain cv2.imread loop": []}
    for _ in range(args.repeats):  # alternate, so both see the same machine state
        for name, run in zip(rates, (run_medcls, run_plain_loop), strict=True):
            with tempfile.TemporaryDirectory() as workdir:
                started = time.perf_counter()
                run(args.data, Path(workdir), args.size)
                rates[name].append(files / (time.perf_counter() - started))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    baseline = medians["plain cv2.imread loop"]
    print(f"{files} images from {args.data}, {args.size}px, {os.cpu_count()} cores, median of {args.repeats} runs\n")
    print("| pipeline | images/s (median) | runs | vs plain loop |")
    print("|---|---|---|---|")
    for name, values in rates.items():
        runs = ", ".join(f"{value:.0f}" for value in values)
        print(f"| {name} | {medians[name]:.0f} | {runs} | {medians[name] / baseline:.2f}x |")


if __name__ == "__main__":
    main()
