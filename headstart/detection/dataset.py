"""A detection dataset in memory, as read from COCO JSON or Pascal VOC (detection.data): images with
their boxes, classes and masks; a box's mask; the train / validation split of the images."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..data.images import files_fingerprint
from ..errors import HeadstartError


@dataclass(frozen=True)
class DetectionImage:
    """One image and its objects: boxes[i] (x0 y0 x1 y1 pixels) has class labels[i]."""

    path: Path
    width: int
    height: int
    boxes: np.ndarray  # (n, 4) float32
    labels: np.ndarray  # (n,) int64, index into DetectionData.classes
    segmentations: tuple  # per box: COCO polygons (list) or RLE (dict) or None; () when the data has no masks
    image_id: int


@dataclass(frozen=True)
class DetectionData:
    """Images with boxes (and masks when has_masks), classes in the order of the COCO category ids."""

    modality = "detection"  # not a field, as ImageSamples.modality

    images: tuple[DetectionImage, ...]
    classes: tuple[str, ...]
    category_ids: tuple[int, ...]
    source: str
    format: str  # "coco" | "voc"
    has_masks: bool
    annotations_sha256: str = field(default="", repr=False)  # digest of the annotation file(s) as read

    def __len__(self) -> int:
        return len(self.images)

    def counts(self) -> dict[str, int]:
        """Boxes per class name (every class, 0 included)."""
        n = np.zeros(len(self.classes), dtype=np.int64)
        for im in self.images:
            n += np.bincount(im.labels, minlength=len(self.classes))[: len(self.classes)]
        return {c: int(k) for c, k in zip(self.classes, n)}

    def fingerprint(self) -> str:
        """Identity of the data: each image file's path, size and modification time, in order, and the
        bytes of the annotation file(s) they were read with (editing a box changes it)."""
        h = hashlib.sha256(files_fingerprint([im.path for im in self.images]).encode())
        h.update(f"\0{self.format}\0{self.annotations_sha256}".encode())
        return h.hexdigest()

    def subset(self, idx: Sequence[int] | np.ndarray) -> DetectionData:
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        return replace(self, images=tuple(self.images[i] for i in idx))


def mask_of(image: DetectionImage, i: int) -> np.ndarray:
    """The (height, width) uint8 0/1 mask of box i, decoded from its COCO polygons or RLE."""
    from pycocotools import mask as mask_utils

    if not image.segmentations or image.segmentations[i] is None:
        raise ValueError(f"{image.path}: box {i} has no segmentation (DetectionData.has_masks is False)")
    seg, h, w = image.segmentations[i], image.height, image.width
    if isinstance(seg, list):  # polygons: rasterise each, then their union
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
    elif isinstance(seg["counts"], list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(seg, h, w)
    else:
        counts = seg["counts"]
        rle = {"size": list(seg["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return np.ascontiguousarray(mask_utils.decode(rle), dtype=np.uint8)


def split_images(data: DetectionData, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random train/val split of image indices (sorted int64 arrays).

    Lightly stratified: an image goes to val only if every class in it with 2+ images keeps an image in
    train, so no such class is missing from training (val may then hold a few images fewer than asked);
    a class with a single image keeps it in train while val can be filled without it. val_split > 0
    gives at least 1 val image when there are 2+ images, and train keeps at least 1."""
    if not 0 <= val_split < 1:
        raise HeadstartError(f"the validation split is {val_split}; give a fraction from 0 up to (not including) 1")
    n = len(data)
    n_val = round(n * val_split)
    if val_split > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    else:
        n_val = 0
    order = np.random.default_rng(seed).permutation(n)
    present = [np.unique(im.labels) for im in data.images]
    in_train = np.zeros(len(data.classes), dtype=np.int64)
    for cls in present:
        in_train[cls] += 1
    several = in_train >= 2
    val: list[int] = []
    val_set: set[int] = set()
    # First pass: no class loses its last train image (a class with one image keeps it in train).
    # Second pass, if val is still short: only classes with 2+ images are protected, as promised.
    for protected in (np.ones_like(several), several):
        for i in order:
            if len(val) == n_val:
                break
            cls = present[i]
            if i in val_set or np.any(protected[cls] & (in_train[cls] <= 1)):
                continue
            in_train[cls] -= 1
            val.append(int(i))
            val_set.add(int(i))
    train = np.array(sorted(i for i in range(n) if i not in val_set), dtype=np.int64)
    return train, np.array(sorted(val), dtype=np.int64)


def coco_names() -> list[str]:
    """torchvision's COCO category list (91 entries, index 0 = background, 'N/A' for unused ids)."""
    from torchvision.models.detection.faster_rcnn import FasterRCNN_ResNet50_FPN_Weights

    return list(FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"])


def class_key(name: str) -> str:
    """A class name as source and new classes are matched by: case, spaces, '_' and '-' aside."""
    return name.strip().lower().replace("_", " ").replace("-", " ")
