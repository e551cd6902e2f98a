"""Test-time augmentation, judged on validation: does averaging the trained model's probabilities
over a few shifted (and, where training flipped, flipped) views of each image beat one view, and
what does it cost in images/s?

Reads a work folder of `bench/accuracy.py` (its trained model and processed validation arrays);
the test split is not read.

    .venv/bin/python bench/tta.py .bench/accuracy/bloodmnist-defaults [.bench/accuracy/chest_xray ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

SHIFT_PX = 2  # a small fraction of a 28-64 px input, within what training's shifts covered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdirs", nargs="+", type=Path)
    args = parser.parse_args()
    print("| work folder | views | val AUC | val ACC | images/s |")
    print("|---|---|---|---|---|")
    for workdir in args.workdirs:
        for row in compare(workdir):
            print("| " + " | ".join(str(cell) for cell in row) + " |")


def compare(workdir: Path) -> list[tuple]:
    from medcls.config import load_params
    from medcls.data.preprocess import load_split
    from medcls.model.evaluate import classification_metrics
    from medcls.model.record import load_trained_model, load_training

    params = load_params(workdir / "params.yaml")
    model = load_trained_model(workdir / "models")
    class_names = load_training(workdir / "models")["class_names"]
    x, y, _ = load_split(workdir / "data" / "processed", "val")
    x = x.astype(np.float32)
    rows = []
    for name, views in view_sets(params.train.augment).items():
        started = time.perf_counter()
        probabilities = np.mean([model.predict(view(x), batch_size=256, verbose=0) for view in views], axis=0)
        rate = len(x) / (time.perf_counter() - started)
        figures = classification_metrics(y, probabilities.astype(np.float64), class_names, bins=15)
        rows.append((workdir.name, name, f"{figures['auc']:.4f}", f"{figures['acc']:.4f}", f"{rate:.0f}"))
    return rows


def view_sets(augment) -> dict[str, list]:
    """One view; five (and four shifts); and with flips where training used them."""
    shifts = [_shift(dy, dx) for dy, dx in ((SHIFT_PX, 0), (-SHIFT_PX, 0), (0, SHIFT_PX), (0, -SHIFT_PX))]
    sets = {"1 (as scored)": [_identity], "5 (shifts)": [_identity, *shifts]}
    flips = [lambda x: x[:, :, ::-1]] if augment.horizontal_flip else []
    flips += [lambda x: x[:, ::-1]] if augment.vertical_flip else []
    if flips:
        sets[f"{1 + len(flips)} (flips)"] = [_identity, *flips]
    return sets


def _identity(x: np.ndarray) -> np.ndarray:
    return x


def _shift(dy: int, dx: int):
    """Shift by whole pixels, the edge mirrored as training's shifts fill it (Keras "reflect" is
    NumPy's "symmetric": d c b a | a b c d)."""

    def shifted(x: np.ndarray) -> np.ndarray:
        size_y, size_x = x.shape[1:3]
        padded = np.pad(x, ((0, 0), (abs(dy), abs(dy)), (abs(dx), abs(dx)), (0, 0)), mode="symmetric")
        top, left = abs(dy) - dy, abs(dx) - dx
        return padded[:, top : top + size_y, left : left + size_x]

    return shifted


if __name__ == "__main__":
    main()
