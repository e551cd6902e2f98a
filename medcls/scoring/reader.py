"""Reading a chunk of inbox files into prepared arrays, on all cores, ahead of the model."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from medcls.data.images import ImageLimits, LoadedImage, image_id, load_image, unreadable_reason
from medcls.data.preprocess import prepare_loaded
from medcls.registry.models import RegisteredModel
from medcls.scoring.inbox import InboxFile
from medcls.support.files import printable_path
from medcls.support.parallel import ordered_map


@dataclass(frozen=True)
class ScannedImage:
    path: str  # printable
    frame: int | None  # in a multi-frame DICOM object
    image_id: str
    prepared: np.ndarray  # as the model takes it
    pixels: np.ndarray  # as decoded: what a reviewing doctor is shown
    acquisition: dict  # channels (1 gray, 3 colour) and, for DICOM, what the header says it shows


@dataclass
class ChunkReader:
    """Reads a chunk's files, remembering what each held and counting what it leaves out."""

    production: RegisteredModel
    limits: ImageLimits
    seen: set[str]  # image ids scored already, or met earlier in this chunk
    skipped: int = 0
    rejected: list[tuple[InboxFile, str]] = field(default_factory=list)  # (file, reason)
    read: list[tuple[InboxFile, list[str]]] = field(default_factory=list)  # (file, its image ids)

    def fresh(self, files: list[InboxFile]) -> Iterator[ScannedImage]:
        """The images not seen yet, in file order, decoded and prepared on all cores ahead of use."""
        for file, (images, reason) in zip(files, ordered_map(self._read, files), strict=True):
            if reason is not None:
                self.rejected.append((file, reason))
                continue
            self.read.append((file, [image.image_id for image in images]))
            for image in images:
                if image.image_id in self.seen:
                    self.skipped += 1
                    continue
                self.seen.add(image.image_id)
                yield image

    def _read(self, file: InboxFile) -> tuple[list[ScannedImage], str | None]:
        try:
            images = load_image(file.path, self.limits, self.production.dicom)
            name = printable_path(file.path)
            preprocess = self.production.preprocess
            return [ScannedImage(name, image.frame, image_id(image.pixels), prepare_loaded(image, preprocess),
                                 image.pixels, _acquisition(image)) for image in images], None  # fmt: skip
        except Exception as exc:  # one file must never stop the run: it is quarantined with the reason
            return [], unreadable_reason(exc)


def _acquisition(image: LoadedImage) -> dict:
    return {"channels": 1 if image.pixels.ndim == 2 else 3, **image.acquisition}
