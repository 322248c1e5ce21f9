"""Reading the user's DATA (images or texts) and preparing inputs the way each card wants them.

Preparing image tensors (data.transforms) needs torch: import it from there; reading and
checking DATA does not."""

from .images import (ImageSamples, drop_bad_images, files_fingerprint, find_bad_images, is_image_file,
                     read_image_data, readable)
from .modality import data_modality
from .splits import stratified_split
from .texts import TextSamples, read_predict_texts, read_text_data

__all__ = [
    "ImageSamples",
    "TextSamples",
    "data_modality",
    "drop_bad_images",
    "files_fingerprint",
    "find_bad_images",
    "is_image_file",
    "read_image_data",
    "read_predict_texts",
    "read_text_data",
    "readable",
    "stratified_split",
]
