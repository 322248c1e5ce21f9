"""Which kind of DATA the user gave: images, text, or a detection dataset.

  detection      a COCO JSON file, a folder holding one, or a Pascal VOC folder (headstart.detection.data)
  a folder       images when its class subfolders hold image files, text when they hold .txt files
  a .jsonl file  text
  a .csv / .tsv  images when its header has a `path` column, text otherwise
"""

from __future__ import annotations

import csv
import os
from itertools import islice
from pathlib import Path

from ..errors import HeadstartError
from .images import PATH_COLUMN, is_image_file

DEFAULT_MODEL = {"image": "efficientnet_lite0", "text": "minilm_l6"}
TEXT_SUFFIXES = (".jsonl", ".ndjson")


def data_modality(data: str | os.PathLike) -> str:
    root = Path(data).expanduser()
    if not root.exists():
        raise HeadstartError(
            f"DATA '{data}' does not exist; give a folder with one subfolder per class (of images or .txt files), "
            "a CSV (path,label for images; text,label for texts) or a JSONL file of texts")
    from ..detection.data import is_detection_data

    if is_detection_data(root):
        return "detection"
    if root.is_dir():
        files = (p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
        for p in islice(files, 200):
            if is_image_file(p):
                return "image"
            if p.suffix.lower() == ".txt":
                return "text"
        return "image"  # the image reader explains what a folder must hold
    suffix = root.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return "text"
    if suffix in (".csv", ".tsv"):
        try:
            with open(root, newline="", encoding="utf-8-sig", errors="replace") as f:
                header = next(csv.reader(f, delimiter="\t" if suffix == ".tsv" else ","), [])
        except OSError as e:
            raise HeadstartError(f"DATA '{data}' cannot be read ({e.strerror})") from None
        return "image" if PATH_COLUMN in [h.strip() for h in header] else "text"
    return "image"
