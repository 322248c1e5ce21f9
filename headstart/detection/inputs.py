"""A detector's inputs: images and their targets (flipped or not) resized as the detector's transform
does, padded batches, and the frozen body prefix whose outputs are computed once per image and flip."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..console import log
from .data import DetectionData, DetectionImage, mask_of
from .model import StagedBackbone

CACHE_LIMIT_BYTES = 3 << 30  # a frozen prefix's outputs are kept in memory up to this size


def load_image(path: Path) -> Tensor:
    """An image file as float RGB (3, H, W) in [0, 1]."""
    from torchvision.transforms.functional import pil_to_tensor

    from ..data.transforms import open_rgb

    return pil_to_tensor(open_rgb(path)).float().div_(255)


def target_of(image: DetectionImage, with_masks: bool) -> dict[str, Tensor]:
    t = {"boxes": torch.as_tensor(image.boxes, dtype=torch.float32).reshape(-1, 4),
         "labels": torch.as_tensor(image.labels, dtype=torch.int64) + 1}  # 0 is the background
    if with_masks:
        t["masks"] = torch.from_numpy(np.stack([mask_of(image, i) for i in range(len(image.boxes))])) \
            if len(image.boxes) else torch.zeros((0, image.height, image.width), dtype=torch.uint8)
    return t


def flip(img: Tensor, target: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    w = img.shape[-1]
    t = dict(target)
    b = t["boxes"].clone()
    b[:, [0, 2]] = w - t["boxes"][:, [2, 0]]
    t["boxes"] = b
    if "masks" in t:
        t["masks"] = t["masks"].flip(-1)
    return img.flip(-1), t


class Samples(torch.utils.data.Dataset):
    """(image index, flipped) -> the image resized and normalized as the detector's transform does,
    and its target resized with it."""

    def __init__(self, data: DetectionData, model: nn.Module, with_masks: bool) -> None:
        self.data, self.transform, self.with_masks = data, model.transform, with_masks

    def __len__(self) -> int:
        return len(self.data.images)

    def __getitem__(self, key: tuple[int, bool]) -> tuple[int, bool, Tensor, dict[str, Tensor]]:
        i, flipped = key
        image = self.data.images[i]
        img, target = load_image(image.path), target_of(image, self.with_masks)
        if flipped:
            img, target = flip(img, target)
        img = self.transform.normalize(img)
        img, target = self.transform.resize(img, target)
        return i, flipped, img, target


def collate_items(batch):
    """A batch as the list of its items (images of different sizes)."""
    return batch


def pad_stack(tensors: list[Tensor], divisible: int = 32) -> Tensor:
    """Tensors (C, H, W) of different sizes, zero-padded to one (N, C, H', W') with H', W' multiples
    of `divisible` (GeneralizedRCNNTransform.batch_images does the same)."""
    h = max(t.shape[-2] for t in tensors)
    w = max(t.shape[-1] for t in tensors)
    h, w = int(math.ceil(h / divisible) * divisible), int(math.ceil(w / divisible) * divisible)
    out = tensors[0].new_zeros((len(tensors), tensors[0].shape[0], h, w))
    for k, t in enumerate(tensors):
        out[k, :, : t.shape[-2], : t.shape[-1]].copy_(t)
    return out


class PrefixCache:
    """Outputs of the body's frozen first units, per (image, flip), kept in memory: valid while
    those units stay frozen (a fixed function in eval mode), so each is computed once."""

    def __init__(self, stop: int) -> None:
        self.stop = stop
        self.entries: dict[tuple[int, bool], tuple[Tensor, dict[int, Tensor], tuple[int, int]]] = {}
        self.bytes = 0
        self.full = False
        self.hits = 0

    def get(self, key: tuple[int, bool]):
        hit = self.entries.get(key)
        self.hits += hit is not None
        return hit

    def put(self, key: tuple[int, bool], x: Tensor, levels: dict[int, Tensor], size: tuple[int, int]) -> None:
        nbytes = x.numel() * x.element_size() + sum(t.numel() * t.element_size() for t in levels.values())
        if self.bytes + nbytes > CACHE_LIMIT_BYTES:
            if not self.full:
                log(f"  the frozen layers' outputs no longer fit in {CACHE_LIMIT_BYTES >> 30} GB: the rest are recomputed")
            self.full = True
            return
        self.entries[key] = (x, levels, size)
        self.bytes += nbytes


def _place(t: Tensor, padded: tuple[int, int], batch: tuple[int, int]) -> Tensor:
    """A map computed on one image padded to `padded` (multiples of 32), zero-padded to the size the
    same unit's map has for the batch padded to `batch`: sizes scale with the stride (<= 32)."""
    h, w = batch[0] * t.shape[-2] // padded[0], batch[1] * t.shape[-1] // padded[1]
    out = t.new_zeros((t.shape[-3], h, w))
    out[:, : t.shape[-2], : t.shape[-1]] = t[0]
    return out


def pyramid_for(backbone: StagedBackbone, items: list[tuple[int, bool, Tensor]], cache: PrefixCache | None,
                device: torch.device) -> tuple[Tensor, "dict[str, Tensor]"]:
    """The padded image batch and its feature pyramid; the body starts from the cached outputs of
    its frozen first units where there are any (each computed once, on the image alone)."""
    batch = pad_stack([img for _, _, img in items]).to(device)
    if cache is None or cache.stop == 0:
        return batch, backbone(batch)
    hits = []
    for i, flipped, img in items:
        hit = cache.get((i, flipped))
        if hit is None:
            single = pad_stack([img]).to(device)
            with torch.no_grad():
                x, levels = backbone.trunk(single, 0, cache.stop)
            hit = (x, levels, (single.shape[-2], single.shape[-1]))
            cache.put((i, flipped), *hit)
        hits.append(hit)
    size = (batch.shape[-2], batch.shape[-1])
    x = torch.stack([_place(h[0], h[2], size) for h in hits])
    collected = {j: torch.stack([_place(h[1][j], h[2], size) for h in hits]) for j in hits[0][1]}
    _, collected = backbone.trunk(x, cache.stop, None, collected)
    return batch, backbone.pyramid(collected)
