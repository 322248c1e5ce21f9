"""advise's recommendation and its stated gain against what they reach (issue 18).

On a training folder (MNIST digits with 10 labelled per class by default, or one of bench_auto.py's
image tasks), `headstart.advise` recommends a model, a strategy (what `fit --strategy auto`
measured) and states the expected gain over no transfer with its spread. Then, on the task's
held-out images (1,000 digits for MNIST), over --seeds seeds, in balanced accuracy:
  - every strategy of --strategies is fitted with the recommended model on the same training
    folder: is the recommended one the best, or within one standard deviation of it?
  - the measured gain of the recommended strategy: its score minus the better way without
    transfer trained on the same folder with advise's own recipes (logistic regression on
    16 px pixels; the same architecture from random weights at 64 px, ~200 steps), seed by seed;
  - the target: the stated gain and the measured gain agree within their spreads (the difference
    is at most the larger of the stated spread and the measured one, a standard deviation over
    the seeds).

    .venv/bin/python benchmarks/bench_advise.py [--seeds 3]
    .venv/bin/python benchmarks/bench_advise.py --task skimage-colour-32 --per-class 10
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from common import ROOT

import headstart
from headstart.advise import SCRATCH_STEPS
from headstart import baselines
from headstart.baselines import ScratchImages
from headstart.auto import balanced_accuracy
from headstart.data import read_image_data
from headstart.data.images import appearance
from headstart.demo import write_digit_folders
from headstart.zoo import get_card


def without_transfer(model: str, train: Path, test: Path, seeds: int) -> tuple[float, list[float]]:
    """(pixels, [from scratch per seed]): advise's two ways without transfer trained on all of train,
    scored on test (balanced accuracy)."""
    a, b = read_image_data(train), read_image_data(test)
    assert a.classes == b.classes
    paths = tuple(a.paths) + tuple(b.paths)
    y = np.concatenate([a.labels, b.labels])
    tr, te = np.arange(len(a)), np.arange(len(a), len(paths))
    grey = appearance(a)["greyscale_share"] > 0.5
    pixels = balanced_accuracy(baselines.pixel_baseline(baselines.pixels(SimpleNamespace(paths=paths), grey), y, tr, te), y[te])
    card = get_card(model)
    images = ScratchImages(paths, tr, te, dataclasses.replace(card.preprocessing, crop=64, resize=64))
    scratch = [balanced_accuracy(baselines.scratch(card, images, y, tr, te, seed, SCRATCH_STEPS, len(a.classes),
                                          torch.device("cpu")), y[te]) for seed in range(seeds)]
    return pixels, scratch


def folders(task: str, per_class: int, work: Path) -> tuple[Path, Path]:
    if task == "mnist":
        return write_digit_folders(ROOT / f"digits-{per_class}shot-100test-seed0", per_class, 100, 0)
    from bench_auto import draw

    return draw(task, per_class, 0, work / "data")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="mnist", help="mnist, or a task of bench_auto.py (shapes, skimage-colour-32, ...)")
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--strategies", default="linear-probe,lp-ft,finetune")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="headstart-bench-advise-"))
    try:
        train, test = folders(args.task, args.per_class, work)
        report = headstart.advise(train, seeds=args.seeds, out=work / "advice.html", cache_dir=ROOT / "cache")
        stated, stated_spread = report["transfer_gain"], report["gain_spread"]
        rec, model = report["recommended_strategy"], report["recommended_model"]
        print(f"advise: {report['verdict']}; {model} with {rec}; stated gain {stated:+.3f} +- {stated_spread:.3f} "
              f"({report['gain_note']}; {report['seconds']} s)")
        print(f"  why: {report['strategy_reason']}")
        strategies = list(dict.fromkeys(args.strategies.split(",") + [rec]))
        reached: dict[str, list[float]] = {}
        for seed in range(args.seeds):
            for strategy in strategies:
                run = headstart.fit(train, model=model, out=work / f"{strategy}-{seed}", strategy=strategy, seed=seed,
                                    cache_dir=ROOT / "cache")
                score = headstart.evaluate(run, test, cache_dir=ROOT / "cache")["balanced_accuracy"]
                reached.setdefault(strategy, []).append(score)
        pixels, scratch = without_transfer(model, train, test, args.seeds)
        gains = [r - max(pixels, s) for r, s in zip(reached[rec], scratch)]
        print(f"what the strategies reach with {model} on {args.task}'s held-out images ({args.seeds} seeds, "
              "balanced accuracy):")
        for s, accs in reached.items():
            mark = "  <- recommended" if s == rec else ""
            print(f"  {s:<13} {np.mean(accs):.3f} +- {np.std(accs):.3f}{mark}")
        print(f"  without transfer: pixels {pixels:.3f}, from scratch {np.mean(scratch):.3f} +- {np.std(scratch):.3f}")
        best = max(reached, key=lambda s: np.mean(reached[s]))
        within = np.mean(reached[best]) - np.mean(reached[rec]) <= max(np.std(reached[best]), np.std(reached[rec]))
        measured, spread = float(np.mean(gains)), float(np.std(gains))
        gain_ok = abs(stated - measured) <= max(spread, stated_spread)
        print(f"recommended {rec} is "
              + ("the best" if best == rec else f"within one standard deviation of the best ({best})" if within
                 else f"BELOW the best ({best})"))
        print(f"measured gain of {rec}: {measured:+.3f} +- {spread:.3f}; stated {stated:+.3f} +- {stated_spread:.3f}: "
              f"{'within' if gain_ok else 'OUTSIDE'} the spreads (difference {stated - measured:+.3f})")
        (ROOT / f"bench_advise-{args.task}-{args.per_class}.json").write_text(json.dumps({"report": {k: report[k] for k in (
            "recommended_model", "recommended_strategy", "transfer_gain", "gain_spread", "gain_measured",
            "learning_curve", "strategy_measurements", "seconds")}, "reached": reached, "pixels": pixels,
            "scratch": scratch, "gains": gains}, indent=2))
        return 0 if (best == rec or within) and gain_ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
