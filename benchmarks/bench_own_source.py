"""Your own source model (issue 6, benchmark 1): pretrain on MNIST development digits 0-4
(all 2,500 of them), then transfer to digits 5-9 with 5 labelled per class, against the same
architecture trained from scratch on those 25 images; accuracy on the other digits 5-9
(about 2,475), mean over 3 seeds (each seed draws other labelled digits).

  transfer    `headstart fit TARGET --model file:SOURCE_DIR` (strategy auto: linear-probe at 5 per class),
              and `--strategy lp-ft`
  scratch     `headstart pretrain TARGET` with the same architecture and input size (random init), given
              ~300 optimizer steps (batch 8, up to 100 epochs, patience 25): a budget it can converge in
  pixels      logistic regression on the raw pixels of the same labelled images

    .venv/bin/python benchmarks/bench_own_source.py [--seeds 3] [--arch resnet10t]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from common import ROOT

import headstart
from headstart.demo import mnist_digits
from headstart.fileio import atomic_dir
from headstart.pretrain import DEFAULT_ARCH


def write_digits(root: Path, groups: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """root/<part>/<digit>/<index>.png for each part's (images, labels)."""
    if root.is_dir():
        return
    with atomic_dir(root) as tmp:
        for part, (x, y) in groups.items():
            for i, (im, label) in enumerate(zip(x, y)):
                d = tmp / part / str(label)
                d.mkdir(parents=True, exist_ok=True)
                Image.fromarray(im, mode="L").save(d / f"{i:05d}.png")


def pixels(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    paths = sorted(folder.rglob("*.png"))
    return (np.stack([np.asarray(Image.open(p), dtype=np.float32).ravel() / 255 for p in paths]),
            np.array([int(p.parent.name) for p in paths]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--arch", default=DEFAULT_ARCH)
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    x, y = mnist_digits()
    src_mask = y < 5
    write_digits(ROOT / "digits-0-4", {"train": (x[src_mask], y[src_mask])})
    work = Path(tempfile.mkdtemp(prefix="headstart-bench-own-"))
    try:
        t0 = time.perf_counter()
        src_dir = ROOT / f"own-source-{args.arch}-{args.epochs}"  # kept: later runs reuse the pretrained source
        source = (headstart.load(src_dir) if (src_dir / "card.json").is_file() else
                  headstart.pretrain(ROOT / "digits-0-4" / "train", arch=args.arch, out=src_dir, epochs=args.epochs,
                                     seed=0, overwrite=True))
        pre_s = source.metrics["total_seconds"]
        m = source.metrics
        print(f"source: {args.arch} from random weights on {m['n_train']} + {m['n_val']} digits 0-4, "
              f"{m['epochs_run']} epochs, val accuracy {m['val_accuracy']:.3f}, {pre_s:.0f} s"
              f"{' (pretrained earlier)' if time.perf_counter() - t0 < pre_s else ''}")
        size = source.card.preprocessing.crop
        results: dict[str, list[float]] = {}
        seconds: dict[str, float] = {}
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            train_idx, test_idx = [], []
            for digit in range(5, 10):
                idx = rng.permutation(np.flatnonzero(y == digit))
                train_idx += list(idx[:args.shots])
                test_idx += list(idx[args.shots:])
            root = work / f"target-{seed}"
            write_digits(root, {"train": (x[train_idx], y[train_idx]), "test": (x[test_idx], y[test_idx])})
            train, test = root / "train", root / "test"
            runs = {
                "transfer (auto)": lambda: headstart.fit(train, model=f"file:{source.dir}", out=work / "t-auto",
                                                         overwrite=True, seed=seed, cache_dir=ROOT / "cache"),
                "transfer lp-ft": lambda: headstart.fit(train, model=f"file:{source.dir}", out=work / "t-lpft",
                                                        strategy="lp-ft", augment="crop", overwrite=True,
                                                        seed=seed, cache_dir=ROOT / "cache"),
                "scratch": lambda: headstart.pretrain(train, arch=args.arch, out=work / "scratch", input_size=size,
                                                      epochs=100, batch_size=8, patience=25, val_split=0.2,
                                                      overwrite=True, seed=seed),
            }
            for name, make in runs.items():
                t0 = time.perf_counter()
                run = make()
                acc = headstart.evaluate(run, test, cache_dir=ROOT / "cache")["accuracy"]
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0
                results.setdefault(name, []).append(acc)
                print(f"seed {seed} {name:<18} {run.metrics['strategy']:<13} accuracy {acc:.3f} on {len(test_idx)} "
                      f"held-out digits 5-9", flush=True)
            from sklearn.linear_model import LogisticRegression

            (xtr, ytr), (xte, yte) = pixels(train), pixels(test)
            results.setdefault("pixels", []).append(float(
                (LogisticRegression(max_iter=2000).fit(xtr, ytr).predict(xte) == yte).mean()))
        print(f"\ndigits 0-4 -> 5-9, {args.shots} labelled per class, mean +- std over {args.seeds} seeds:")
        for name, accs in results.items():
            per_seed = seconds.get(name, 0) / args.seeds
            print(f"  {name:<18} {np.mean(accs):.3f} +- {np.std(accs):.3f}   ({per_seed:.0f} s per seed)")
        margin = np.mean(results["transfer (auto)"]) - np.mean(results["scratch"])
        print(f"transfer (auto) - scratch: {margin:+.3f} ({'transfer wins' if margin > 0 else 'TRANSFER DOES NOT WIN'})")
        (ROOT / "bench_own_source.json").write_text(json.dumps({"results": results, "pretrain_seconds": pre_s}, indent=2))
        return 0 if margin > 0 else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
