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

_RESAMPLE = {
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
        im = im.resize(size, _RESAMPLE[pre.interpolation])
    w, h = im.size
    c = pre.crop
    top, left = int(round((h - c) / 2.0)), int(round((w - c) / 2.0))
    return im.crop((left, top, left + c, top + c))


class ImageLoader:
    """path -> uint8 tensor (H, W, 3) prepared per the card; picklable for DataLoader workers."""

    def __init__(self, pre: Preprocessing) -> None:
        self.pre = pre

    def __call__(self, path: str | os.PathLike) -> torch.Tensor:
        arr = np.asarray(resize_center_crop(open_rgb(path, draft_to=self.pre.resize), self.pre))
        return torch.from_numpy(arr.copy())


def normalize(batch: torch.Tensor, pre: Preprocessing, device: torch.device) -> torch.Tensor:
    """uint8 NHWC -> float NCHW (channels_last), standardized with the card's mean and std."""
    x = batch.to(device, non_blocking=True).permute(0, 3, 1, 2).float()
    mean = torch.tensor(pre.mean, device=device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(pre.std, device=device).view(1, 3, 1, 1) * 255.0
    return x.sub_(mean).div_(std)


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
