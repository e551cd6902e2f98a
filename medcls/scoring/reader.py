"""Reading a chunk of inbox files into prepared arrays, on all cores, ahead of the model."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medcls.data.images import ImageLimits, UnreadableImage, image_id, load_image
from medcls.data.preprocess import prepare_loaded
from medcls.registry.models import RegisteredModel
from medcls.support.files import printable_path
from medcls.support.parallel import ordered_map


@dataclass
class ChunkReader:
    """Reads a chunk's files into (name, image_id, prepared array), counting what it leaves out."""

    production: RegisteredModel
    seen: set[str]  # image ids scored already, or met earlier in this chunk
    skipped: int = 0
    rejected: list[tuple[Path, str]] = field(default_factory=list)  # (file, reason)

    def fresh(self, files: list[Path]) -> Iterator[tuple[str, str, np.ndarray]]:
        """The images not seen yet, in file order, decoded and prepared on all cores ahead of use."""
        for path, (images, reason) in zip(files, ordered_map(self._read, files), strict=True):
            if reason is not None:
                self.rejected.append((path, reason))
            for name, digest, array in images:
                if digest in self.seen:
                    self.skipped += 1
                    continue
                self.seen.add(digest)
                yield name, digest, array

    def _read(self, path: Path) -> tuple[list[tuple[str, str, np.ndarray]], str | None]:
        try:
            images = load_image(path, ImageLimits(), self.production.dicom)
        except UnreadableImage as exc:
            return [], str(exc)
        name = printable_path(path)
        return [
            (name if image.frame is None else f"{name}#frame{image.frame}", image_id(image.pixels),
             prepare_loaded(image, self.production.preprocess))
            for image in images
        ], None  # fmt: skip
