"""Reading the user's DATA and preparing inputs the way each card wants them."""

from .images import (ImageSamples, drop_bad_images, files_fingerprint, find_bad_images, is_image_file,
                     read_image_data, readable)
from .splits import stratified_split
from .transforms import ImageFiles, ImageLoader, normalize, open_rgb

__all__ = [
    "ImageFiles",
    "ImageLoader",
    "ImageSamples",
    "drop_bad_images",
    "files_fingerprint",
    "find_bad_images",
    "is_image_file",
    "normalize",
    "open_rgb",
    "read_image_data",
    "readable",
    "stratified_split",
]
