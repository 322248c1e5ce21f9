"""Decoding and resizing images the way a card says, identically everywhere.

Workers return uint8 HWC crops (4x less to pass between processes than floats); the
batch is stacked NHWC, so permuting it to NCHW gives a channels_last tensor for free,
and normalization runs once per batch on the device that runs the model.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ..zoo.card import Preprocessing

RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def open_rgb(path: str | os.PathLike, draft_to: int | None = None) -> Image.Image:
    """Open any image as 8-bit RGB: EXIF rotation applied, alpha composited on white,
    16-bit and float greyscale scaled to 0-255, palette and CMYK converted."""
    with Image.open(path) as im:
        if draft_to and im.format == "JPEG":
            # Let the JPEG decoder downscale by 1/2, 1/4 or 1/8, keeping the shorter side >= draft_to.
            im.draft("RGB", (draft_to, draft_to))
        im.load()
        return to_rgb(im)


def to_rgb(im: Image.Image) -> Image.Image:
    """An image already open, as 8-bit RGB (open_rgb's conversions, for images that come as PIL objects)."""
    if im.getexif().get(0x0112, 1) != 1:  # EXIF orientation: camera photos stored sideways
        im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        im = Image.fromarray(np.clip(arr / hi * 255.0, 0, 255).astype(np.uint8), "L")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im.convert("RGBA"))
    if im.mode != "RGB":
        im = im.convert("RGB")
    return im


def resize_center_crop(im: Image.Image, pre: Preprocessing) -> Image.Image:
    """Shorter side to pre.resize, then a centred pre.crop square (torchvision's arithmetic)."""
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = pre.resize, int(pre.resize * long / short)
    size = (new_short, new_long) if w <= h else (new_long, new_short)
    if size != im.size:
        im = im.resize(size, RESAMPLE[pre.interpolation])
    w, h = im.size
    c = pre.crop
    top, left = int(round((h - c) / 2.0)), int(round((w - c) / 2.0))
    return im.crop((left, top, left + c, top + c))


class ImageLoader:
    """path -> uint8 tensor (H, W, 3) prepared per the card; picklable for DataLoader workers."""

    def __init__(self, pre: Preprocessing) -> None:
        self.pre = pre

    def __call__(self, path: str | os.PathLike) -> torch.Tensor:
        return torch.from_numpy(np.array(resize_center_crop(open_rgb(path, draft_to=self.pre.resize), self.pre)))


def normalize(batch: torch.Tensor, pre: Preprocessing, device: torch.device) -> torch.Tensor:
    """uint8 NHWC -> float NCHW (channels_last), standardized with the card's mean and std."""
    x = batch.to(device, non_blocking=True).permute(0, 3, 1, 2).float()
    mean = torch.tensor(pre.mean, device=device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(pre.std, device=device).view(1, 3, 1, 1) * 255.0
    return x.sub_(mean).div_(std)


class EvalTransform:
    """One image -> the float tensor (3, crop, crop) that predict feeds the model, for using a run's
    network in your own code (torchvision-style: a callable on a PIL image).

    A path goes through exactly predict's steps (ImageLoader, then normalize); a PIL image through
    the same conversions, resize, crop and normalization, except that a large JPEG you opened
    yourself is decoded at full size (predict lets the JPEG decoder downscale it first)."""

    def __init__(self, pre: Preprocessing) -> None:
        self.pre = pre
        self.load = ImageLoader(pre)

    def __call__(self, image: Image.Image | str | os.PathLike) -> torch.Tensor:
        if isinstance(image, Image.Image):
            crop = torch.from_numpy(np.array(resize_center_crop(to_rgb(image), self.pre)))
        else:
            crop = self.load(image)
        return normalize(crop[None], self.pre, torch.device("cpu"))[0].contiguous()

    def __repr__(self) -> str:
        p = self.pre
        return (f"EvalTransform(resize={p.resize}, crop={p.crop}, interpolation={p.interpolation!r}, "
                f"mean={p.mean}, std={p.std})")


class ImageFiles(torch.utils.data.Dataset):
    """Files as prepared uint8 crops; a file that fails to decode yields (zeros, False)."""

    def __init__(self, paths: list[Path] | tuple[Path, ...], pre: Preprocessing) -> None:
        self.paths = [str(p) for p in paths]
        self.load = ImageLoader(pre)
        self.crop = pre.crop

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, bool]:
        try:
            return self.load(self.paths[i]), True
        except (OSError, SyntaxError, ValueError, EOFError):
            return torch.zeros(self.crop, self.crop, 3, dtype=torch.uint8), False


MIN_CROP_AREA = 0.35  # random resized crops keep at least this share of the image


class TrainLoader:
    """path -> uint8 (H, W, 3) for training: a random resized crop (and a horizontal flip) at
    the card's input size, or the eval preparation (with augment="flip", flipped half the time;
    with "none", as it is).

    The randomness comes from the `seed` of each call, not from a process's generator, so an
    epoch's augmentations are the same however many workers or processes load it, and a
    resumed run sees exactly the crops an uninterrupted one would have."""

    def __init__(self, pre: Preprocessing, augment: str) -> None:
        self.pre, self.augment = pre, augment
        self.eval = ImageLoader(pre)

    def crop_box(self, width: int, height: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """(top, left, h, w) of a crop keeping MIN_CROP_AREA..1 of the area, aspect ratio 3/4..4/3."""
        area = width * height
        for _ in range(10):
            target = area * rng.uniform(MIN_CROP_AREA, 1.0)
            aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
            w, h = int(round((target * aspect) ** 0.5)), int(round((target / aspect) ** 0.5))
            if 0 < w <= width and 0 < h <= height:
                return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
        side = min(width, height)  # no fit in 10 tries: the centred square
        return (height - side) // 2, (width - side) // 2, side, side

    def __call__(self, path: str | os.PathLike, seed: int = 0) -> torch.Tensor:
        if self.augment == "none":
            return self.eval(path)
        if self.augment == "flip":
            x = self.eval(path)
            return x.flip(1) if np.random.default_rng(seed).random() < 0.5 else x
        # decode large JPEGs at reduced size, but keep enough pixels for the smallest crop
        im = open_rgb(path, draft_to=int(self.pre.resize / MIN_CROP_AREA**0.5))
        rng = np.random.default_rng(seed)
        top, left, h, w = self.crop_box(im.width, im.height, rng)
        im = im.resize((self.pre.crop, self.pre.crop), RESAMPLE[self.pre.interpolation],
                       box=(left, top, left + w, top + h))
        if self.augment == "crop-flip" and rng.random() < 0.5:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return torch.from_numpy(np.array(im))


class LabelledImages(torch.utils.data.Dataset):
    """(uint8 HWC image, label) pairs through `load` (ImageLoader or TrainLoader).

    With a TrainLoader each item's augmentation seed is derived from (seed, epoch, index);
    the epoch sits in shared memory, so persistent DataLoader workers follow set_epoch()."""

    def __init__(self, paths, labels, load, seed: int = 0) -> None:
        self.paths = [str(p) for p in paths]
        self.labels = [int(v) for v in labels]
        self.load = load
        self.seed = seed
        self.epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        self.epoch.fill_(epoch)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if isinstance(self.load, TrainLoader):
            seed = int(np.random.SeedSequence([self.seed, int(self.epoch), i]).generate_state(1)[0])
            return self.load(self.paths[i], seed), self.labels[i]
        return self.load(self.paths[i]), self.labels[i]
