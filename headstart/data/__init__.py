"""Reading the user's DATA (images or texts) and preparing inputs the way each card wants them."""

from .images import (ImageSamples, drop_bad_images, files_fingerprint, find_bad_images, is_image_file,
                     read_image_data, readable)
from .detect import data_modality
from .splits import stratified_split
from .texts import TextSamples, read_predict_texts, read_text_data
from .transforms import EvalTransform, ImageFiles, ImageLoader, normalize, open_rgb, to_rgb

__all__ = [
    "EvalTransform",
    "ImageFiles",
    "ImageLoader",
    "ImageSamples",
    "TextSamples",
    "data_modality",
    "drop_bad_images",
    "files_fingerprint",
    "find_bad_images",
    "is_image_file",
    "normalize",
    "open_rgb",
    "read_image_data",
    "read_predict_texts",
    "read_text_data",
    "readable",
    "stratified_split",
    "to_rgb",
]
