"""Reading medical images: types -> picture (raster) and DICOM readers -> one load function."""

from medcls.data.images.load import is_candidate_file, load_image, read_file
from medcls.data.images.pixels import describe_image, encode_png, image_id
from medcls.data.images.raster import declared_size, decode_image, is_jpeg
from medcls.data.images.types import (
    ACQUISITION_ATTRIBUTES,
    ImageLimits,
    ImageStats,
    LoadedImage,
    UnreadableImage,
    unreadable_reason,
)

__all__ = [
    "ACQUISITION_ATTRIBUTES",
    "ImageLimits",
    "ImageStats",
    "LoadedImage",
    "UnreadableImage",
    "declared_size",
    "decode_image",
    "describe_image",
    "encode_png",
    "image_id",
    "is_candidate_file",
    "is_jpeg",
    "load_image",
    "read_file",
    "unreadable_reason",
]
