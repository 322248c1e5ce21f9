"""A synthetic "candy" detection dataset with known boxes and masks, in COCO JSON.

Four kinds of candy, each a shape with its own texture, drawn at varied scales and
rotations on textured backgrounds; candies drawn later occlude earlier ones, and the
boxes and masks are those of the visible part (a candy hidden for more than half of its
area is left out of the annotations and painted over). Some images hold no candy at all
(background images, which COCO allows). Colours vary within a kind, so the kinds differ by
shape and texture as much as by colour.

    write_candy(root, n_images=60, seed=0)   ->  root/images/*.png + root/annotations.json

Masks are written as COCO polygons when a candy is fully visible, and as RLE when it is
occluded (its visible region can have holes), so both encodings are exercised.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..fileio import atomic_dir

CANDY = ("chocolate_bar", "lollipop", "gummy_bear", "mint")
ANNOTATIONS = "annotations.json"


def _jitter(rng: np.random.Generator, rgb: tuple[int, int, int], amount: int = 30) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)  # type: ignore[return-value]


def _background(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """A table top: a colour gradient, noise, and a few soft stripes or blobs of another colour."""
    a, b = rng.integers(60, 230, size=3), rng.integers(60, 230, size=3)
    t = np.linspace(0, 1, w)[None, :, None] if rng.random() < 0.5 else np.linspace(0, 1, h)[:, None, None]
    img = a * (1 - t) + b * t + rng.normal(0, 12, size=(h, w, 3))
    img = np.broadcast_to(img, (h, w, 3)).copy()
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    for _ in range(int(rng.integers(2, 7))):
        col = tuple(int(v) for v in rng.integers(40, 240, size=3))
        if rng.random() < 0.5:
            x0, y0 = rng.integers(-w // 4, w), rng.integers(-h // 4, h)
            draw.line([(int(x0), int(y0)), (int(x0 + rng.integers(-w, w)), int(y0 + rng.integers(-h, h)))],
                      fill=col, width=int(rng.integers(2, 10)))
        else:
            x0, y0, r = rng.integers(0, w), rng.integers(0, h), rng.integers(5, max(6, w // 10))
            draw.ellipse([int(x0 - r), int(y0 - r), int(x0 + r), int(y0 + r)], fill=col)
    return pil.filter(ImageFilter.GaussianBlur(1.2))


def _rotated(points: np.ndarray, angle: float, cx: float, cy: float) -> list[tuple[float, float]]:
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in points]


def _candy(rng: np.random.Generator, kind: int, size: float, cx: float, cy: float,
           layer: Image.Image, mask: Image.Image) -> list[tuple[float, float]] | None:
    """Draw one candy into the RGB `layer` and its silhouette into the L `mask`; return the
    silhouette as a polygon when it is one (bars and mints), else None."""
    draw, m = ImageDraw.Draw(layer), ImageDraw.Draw(mask)
    angle = float(rng.uniform(0, math.pi))
    if kind == 0:  # chocolate bar: a long brown rectangle with a grid of squares
        L, W = size, size * rng.uniform(0.35, 0.5)
        outline = _rotated(np.array([(-L / 2, -W / 2), (L / 2, -W / 2), (L / 2, W / 2), (-L / 2, W / 2)]), angle, cx, cy)
        draw.polygon(outline, fill=_jitter(rng, (105, 60, 30), 20))
        m.polygon(outline, fill=255)
        dark = _jitter(rng, (70, 38, 18), 12)
        for i in range(1, 4):  # grooves across and one along
            x = -L / 2 + i * L / 4
            draw.line(_rotated(np.array([(x, -W / 2), (x, W / 2)]), angle, cx, cy), fill=dark, width=max(1, int(size / 30)))
        draw.line(_rotated(np.array([(-L / 2, 0), (L / 2, 0)]), angle, cx, cy), fill=dark, width=max(1, int(size / 30)))
        return outline
    elif kind == 1:  # lollipop: a disc with coloured rings, and a white stick
        r = size / 2 * 0.75
        stick = _rotated(np.array([(r * 0.8, -size / 25), (size * 0.95, -size / 25), (size * 0.95, size / 25),
                                   (r * 0.8, size / 25)]), angle, cx, cy)
        draw.polygon(stick, fill=_jitter(rng, (235, 235, 225), 10))
        m.polygon(stick, fill=255)
        c1, c2 = _jitter(rng, (220, 30, 60), 35), _jitter(rng, (250, 240, 240), 10)
        n = int(rng.integers(3, 6))
        for i in range(n, 0, -1):
            rr = r * i / n
            draw.ellipse([cx - rr, cy - rr, cx + rr, cy + rr], fill=c1 if i % 2 else c2)
        m.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        return None
    elif kind == 2:  # gummy bear: a translucent-looking green/orange blob of head, body and ears, dotted
        col = _jitter(rng, (60, 190, 70) if rng.random() < 0.6 else (240, 140, 30), 30)
        s = size / 2
        parts = [(0, s * 0.25, s * 0.55, s * 0.7), (0, -s * 0.55, s * 0.4, s * 0.4),
                 (-s * 0.35, -s * 0.9, s * 0.15, s * 0.15), (s * 0.35, -s * 0.9, s * 0.15, s * 0.15)]
        for px, py, rx, ry in parts:
            (x, y), = _rotated(np.array([(px, py)]), angle, cx, cy)
            draw.ellipse([x - rx, y - ry, x + rx, y + ry], fill=col)
            m.ellipse([x - rx, y - ry, x + rx, y + ry], fill=255)
        light = tuple(min(255, c + 60) for c in col)
        for _ in range(6):
            (x, y), = _rotated(np.array([(rng.uniform(-s * 0.3, s * 0.3), rng.uniform(-s * 0.4, s * 0.6))]), angle, cx, cy)
            d = max(1.0, size / 30)
            draw.ellipse([x - d, y - d, x + d, y + d], fill=light)
        return None
    else:  # mint: a white disc with radial stripes of green or red
        r = size / 2 * 0.6
        outline = [(cx + r * math.cos(t), cy + r * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 32, endpoint=False)]
        draw.polygon(outline, fill=_jitter(rng, (245, 245, 240), 8))
        m.polygon(outline, fill=255)
        stripe = _jitter(rng, (40, 160, 80) if rng.random() < 0.5 else (200, 40, 40), 25)
        k = int(rng.integers(5, 9))
        for i in range(k):
            a0 = angle + 2 * math.pi * i / k
            draw.pieslice([cx - r, cy - r, cx + r, cy + r], math.degrees(a0), math.degrees(a0 + math.pi / k), fill=stripe)
        return outline


def candy_image(rng: np.random.Generator, w: int, h: int, max_candies: int = 5
                ) -> tuple[Image.Image, list[tuple[int, np.ndarray, list | None]]]:
    """One scene and its candies as (kind, visible mask, polygon or None when occluded).
    A candy that would hide more than half of an earlier one is not placed, so every candy
    in the image is annotated and at least half of each is visible."""
    img = _background(rng, w, h)
    n = int(rng.integers(1, max_candies + 1)) if rng.random() < 0.92 else 0
    owner = np.full((h, w), -1, dtype=np.int32)
    placed: list[tuple[int, int, list | None]] = []  # kind, full area, outline
    for _ in range(n):
        for _try in range(10):
            kind = int(rng.integers(0, len(CANDY)))
            size = float(rng.uniform(0.15, 0.45) * min(w, h))
            cx, cy = rng.uniform(size * 0.3, w - size * 0.3), rng.uniform(size * 0.3, h - size * 0.3)
            layer, mask = Image.new("RGB", (w, h)), Image.new("L", (w, h), 0)
            outline = _candy(rng, kind, size, cx, cy, layer, mask)
            sil = np.asarray(mask) > 127
            if sil.sum() < 30:
                continue
            left = [int(((owner == j) & ~sil).sum()) for j in range(len(placed))]
            if all(v >= 0.5 * placed[j][1] for j, v in enumerate(left)):
                break
        else:
            continue
        img.paste(layer, (0, 0), mask)
        owner[sil] = len(placed)
        placed.append((kind, int(sil.sum()), outline))
    out = []
    for i, (kind, full, outline) in enumerate(placed):
        visible = owner == i
        out.append((kind, visible, outline if visible.sum() == full else None))
    return img.filter(ImageFilter.GaussianBlur(0.5)), out


def write_candy(root: str | Path, n_images: int = 60, seed: int = 0, size: tuple[int, int] = (320, 256),
                max_candies: int = 5, jitter: float = 0.15) -> Path:
    """Write `n_images` scenes to root/images and their COCO annotations to root/annotations.json
    (atomically: root appears complete or not at all); each side is `size` times 1 +- `jitter`. Returns root."""
    from pycocotools import mask as mask_utils

    root = Path(root)
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    with atomic_dir(root) as tmp:
        (tmp / "images").mkdir(parents=True)
        for k in range(n_images):
            w = int(size[0] * rng.uniform(1 - jitter, 1 + jitter)) // 2 * 2
            h = int(size[1] * rng.uniform(1 - jitter, 1 + jitter)) // 2 * 2
            img, candies = candy_image(rng, w, h, max_candies)
            name = f"candy_{seed:03d}_{k:04d}.png"
            img.save(tmp / "images" / name)
            images.append({"id": k + 1, "file_name": name, "width": w, "height": h})
            for kind, visible, outline in candies:
                ys, xs = np.nonzero(visible)
                x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
                rle = mask_utils.encode(np.asfortranarray(visible.astype(np.uint8)))
                rle["counts"] = rle["counts"].decode("ascii")
                annotations.append({"id": len(annotations) + 1, "image_id": k + 1, "category_id": kind + 1,
                                    "bbox": [x0, y0, x1 - x0, y1 - y0], "area": int(visible.sum()),
                                    "iscrowd": 0,
                                    "segmentation": [[round(v, 1) for xy in outline for v in xy]] if outline else rle})
        coco = {"info": {"description": f"headstart synthetic candy, seed {seed}"},
                "images": images, "annotations": annotations,
                "categories": [{"id": i + 1, "name": c, "supercategory": "candy"} for i, c in enumerate(CANDY)]}
        (tmp / ANNOTATIONS).write_text(json.dumps(coco))
    return root
