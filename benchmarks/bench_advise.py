"""advise's recommendation and its stated gain against what they reach (issue 18).

On MNIST digits with 10 labelled per class, `headstart.advise` recommends a model, a strategy
(what `fit --strategy auto` measured) and states the expected gain over no transfer with its
spread. Then, on 1,000 held-out digits, over --seeds seeds:
  - every strategy of --strategies is fitted with the recommended model on the same 100 digits:
    is the recommended one the best, or within one standard deviation of it?
  - the measured gain of the recommended strategy: its accuracy minus the best way without
    transfer trained on the same 100 digits (logistic regression on pixels, and the same
    architecture from random weights, advise's own recipe at 64 px), seed by seed;
  - the target: the stated gain is within the spread (one standard deviation over the seeds) of
    the measured gain.

    .venv/bin/python benchmarks/bench_advise.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from common import ROOT

import headstart
from headstart.advise import SCRATCH_STEPS, ScratchImages, _scratch
from headstart.data import read_image_data
from headstart.demo import pixel_baseline, write_digit_folders
from headstart.zoo import get_card


def scratch_accuracy(model: str, train: Path, test: Path, seed: int) -> float:
    """advise's from-scratch baseline (random weights, 64 px, ~200 steps) on all of train, scored on test."""
    a, b = read_image_data(train), read_image_data(test)
    assert a.classes == b.classes
    paths = tuple(a.paths) + tuple(b.paths)
    labels = np.concatenate([a.labels, b.labels])
    tr, te = np.arange(len(a)), np.arange(len(a), len(paths))
    card = get_card(model)
    images = ScratchImages(paths, tr, te, dataclasses.replace(card.preprocessing, crop=64, resize=64))
    return _scratch(card, images, labels, tr, te, seed, SCRATCH_STEPS, len(a.classes), torch.device("cpu"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--strategies", default="linear-probe,lp-ft,finetune")
    args = ap.parse_args()
    train, test = write_digit_folders(ROOT / "digits-10shot-100test-seed0", 10, 100, 0)
    work = Path(tempfile.mkdtemp(prefix="headstart-bench-advise-"))
    try:
        report = headstart.advise(train, seeds=args.seeds, out=ROOT / "advice-mnist10.html", cache_dir=ROOT / "cache")
        stated, stated_spread = report["transfer_gain"], report["gain_spread"]
        rec, model = report["recommended_strategy"], report["recommended_model"]
        print(f"advise: {report['verdict']}; {model} with {rec}; stated gain {stated:+.3f} +- {stated_spread:.3f} at "
              f"{report['gain_at_per_class']} per class ({report['gain_note']}; {report['seconds']} s)")
        print(f"  why: {report['strategy_reason']}")
        strategies = list(dict.fromkeys(args.strategies.split(",") + [rec]))
        reached: dict[str, list[float]] = {}
        for seed in range(args.seeds):
            for strategy in strategies:
                run = headstart.fit(train, model=model, out=work / f"{strategy}-{seed}", strategy=strategy, seed=seed,
                                    cache_dir=ROOT / "cache")
                reached.setdefault(strategy, []).append(headstart.evaluate(run, test, cache_dir=ROOT / "cache")["accuracy"])
        pixels = pixel_baseline(train, test)
        scratch = [scratch_accuracy(model, train, test, seed) for seed in range(args.seeds)]
        gains = [r - max(pixels, s) for r, s in zip(reached[rec], scratch)]
        print(f"what the strategies reach with {model} on 1,000 held-out digits ({args.seeds} seeds):")
        for s, accs in reached.items():
            mark = "  <- recommended" if s == rec else ""
            print(f"  {s:<13} {np.mean(accs):.3f} +- {np.std(accs):.3f}{mark}")
        print(f"  without transfer: pixels {pixels:.3f}, from scratch {np.mean(scratch):.3f} +- {np.std(scratch):.3f}")
        best = max(reached, key=lambda s: np.mean(reached[s]))
        within = np.mean(reached[best]) - np.mean(reached[rec]) <= max(np.std(reached[best]), np.std(reached[rec]))
        measured, spread = float(np.mean(gains)), float(np.std(gains))
        gain_ok = abs(stated - measured) <= spread
        print(f"recommended {rec} is "
              f"{'the best' if best == rec else f'within one standard deviation of the best ({best})' if within else f'BELOW the best ({best})'}")
        print(f"measured gain of {rec}: {measured:+.3f} +- {spread:.3f}; stated {stated:+.3f}: "
              f"{'within' if gain_ok else 'OUTSIDE'} the measured spread (difference {stated - measured:+.3f})")
        (ROOT / "bench_advise.json").write_text(json.dumps({"report": {k: report[k] for k in (
            "recommended_model", "recommended_strategy", "transfer_gain", "gain_spread", "learning_curve",
            "strategy_measurements")}, "reached": reached, "pixels": pixels, "scratch": scratch, "gains": gains},
            indent=2))
        return 0 if (best == rec or within) and gain_ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
