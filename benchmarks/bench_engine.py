"""Same seeds, same figures: the figures a change of the training machinery must not move, from
whichever headstart this process imports (PYTHONPATH), so that two checkouts can be compared
side by side:

  digits    the demo's MNIST digits (10 per class, 100 held out per class, seed 0), efficientnet_lite0:
            linear-probe, finetune, lp-ft, partial:2; held-out accuracy, and fine-tuning's images/s
  text      Rotten Tomatoes development rows (movies a-m), 8 per class, seed 0: MiniLM linear probe,
            GloVe 6B 50-d (fit's auto encoder); held-out balanced accuracy
  detect    the detection demo (candy scenes, 60 training / 40 held out, Faster R-CNN from
            mobilenet_v2, its default schedule): held-out mAP@.5 and mAP

    PYTHONPATH=CHECKOUT .venv/bin/python benchmarks/bench_engine.py --out FILE.json [--parts digits,text,detect]
    .venv/bin/python benchmarks/bench_engine.py --compare BEFORE.json AFTER.json
    .venv/bin/python benchmarks/bench_engine.py --throughput BEFORE_CHECKOUT AFTER_CHECKOUT [--rounds 5]

--compare prints both side by side and the largest difference of each figure (an identical
computation gives 0; images/s is a timing, compared by --throughput). --throughput fine-tunes
efficientnet_lite0 on 30 digits per class (3 epochs, 16 per batch) with each checkout in turn, in
fresh processes, alternating which goes first, and prints the median ratio of fit's training
images/s (after / before).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT


def digits(work: Path) -> dict[str, float]:
    import headstart
    from headstart.demo import write_digit_folders

    train, test = write_digit_folders(ROOT / "digits-10shot-100test-seed0", 10, 100, 0)
    out: dict[str, float] = {}
    for strategy in ("linear-probe", "finetune", "lp-ft", "partial:2"):
        t0 = time.perf_counter()
        run = headstart.fit(train, model="efficientnet_lite0", strategy=strategy, out=work / "run", overwrite=True,
                            seed=0, cache_dir=ROOT / "cache")
        out[f"digits {strategy} accuracy"] = headstart.evaluate(run, test, cache_dir=ROOT / "cache")["accuracy"]
        if strategy == "finetune":
            out["digits finetune images/s"] = run.metrics.get("images_per_second") or 0.0
        print(f"digits {strategy}: {out[f'digits {strategy} accuracy']:.4f} ({time.perf_counter() - t0:.0f} s)",
              flush=True)
    return out


def text(work: Path) -> dict[str, float]:
    import headstart
    from rotten import by_movie_split, dev_rows, sample_per_class, write_csv

    train_all, test = by_movie_split(dev_rows(), 0.3, 0)
    train_csv = write_csv(sample_per_class(train_all, 8, 0), work / "train.csv")
    test_csv = write_csv(test, work / "test.csv")
    out: dict[str, float] = {}
    for name, kw in (("minilm linear-probe", {"model": "minilm_l6", "strategy": "linear-probe"}),
                     ("glove", {"model": "glove_6b_50d"})):
        run = headstart.fit(train_csv, out=work / "run", overwrite=True, seed=0, cache_dir=ROOT / "cache", **kw)
        out[f"text {name} balanced accuracy"] = headstart.evaluate(run, test_csv, cache_dir=ROOT / "cache")[
            "balanced_accuracy"]
        print(f"text {name}: {out[f'text {name} balanced accuracy']:.4f}", flush=True)
    return out


def detect(work: Path) -> dict[str, float]:
    from headstart.demo import run_detect_demo

    t0 = time.perf_counter()
    r = run_detect_demo(folder=work / "detect")
    print(f"detect: mAP@.5 {r['map_50']:.4f}, mAP {r['map']:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return {"detect mAP@.5": r["map_50"], "detect mAP": r["map"], "detect images/s": r["train_images_per_second"]}


def compare(before: Path, after: Path) -> int:
    a, b = json.loads(before.read_text()), json.loads(after.read_text())
    print(f"{'figure':<38}{'before':>10}{'after':>10}{'difference':>12}")
    worst = 0.0
    for k in a:
        if k in b:
            d = b[k] - a[k]
            print(f"{k:<38}{a[k]:>10.4f}{b[k]:>10.4f}{d:>+12.4f}")
            if "images/s" not in k:
                worst = max(worst, abs(d))
    print(f"largest difference of a figure (timings aside): {worst:.4f}")
    return 0 if worst == 0 else 1


THROUGHPUT_RUN = """
import json, sys, tempfile
from pathlib import Path
sys.path.insert(0, {bench!r})
from common import ROOT
import headstart
from headstart.demo import write_digit_folders
train, _ = write_digit_folders(ROOT / "digits-30shot-10test-seed0", 30, 10, 0)
run = headstart.fit(train, model="efficientnet_lite0", strategy="finetune", epochs=3, batch_size=16, val_split=0.1,
                    out=Path(tempfile.mkdtemp()) / "run", seed=0, cache_dir=ROOT / "cache")
print(json.dumps({{"images_per_second": run.metrics["images_per_second"], "loss": run.metrics["history"][-1]["train_loss"]}}))
"""


def throughput(before: Path, after: Path, rounds: int) -> int:
    import os
    import subprocess

    import numpy as np

    code = THROUGHPUT_RUN.format(bench=str(Path(__file__).resolve().parent))
    rates: dict[str, list[float]] = {"before": [], "after": []}
    losses: dict[str, set[float]] = {"before": set(), "after": set()}
    for r in range(rounds):
        order = [("before", before), ("after", after)] if r % 2 == 0 else [("after", after), ("before", before)]
        for name, checkout in order:
            env = {**os.environ, "PYTHONPATH": str(checkout), "PYTHONWARNINGS": "ignore"}
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            m = json.loads(out.stdout.strip().splitlines()[-1])
            rates[name].append(m["images_per_second"])
            losses[name].add(m["loss"])
            print(f"round {r} {name}: {m['images_per_second']:.2f} images/s (last train loss {m['loss']:.6f})",
                  flush=True)
    ratio = float(np.median(np.array(rates["after"]) / np.array(rates["before"])))
    print(f"fine-tuning images/s, median over {rounds} rounds: before {np.median(rates['before']):.2f}, after "
          f"{np.median(rates['after']):.2f}; median ratio of each round's pair after/before {ratio:.3f} "
          f"(target >= 0.97); same losses: {losses['before'] == losses['after']}")
    return 0 if ratio >= 0.97 else 1


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path)
    ap.add_argument("--parts", default="digits,text,detect")
    ap.add_argument("--compare", nargs=2, type=Path)
    ap.add_argument("--throughput", nargs=2, type=Path)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if args.compare:
        return compare(*args.compare)
    if args.throughput:
        return throughput(*args.throughput, args.rounds)
    import headstart

    print(f"headstart from {Path(headstart.__file__).parent}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="headstart-bench-engine-"))
    figures: dict[str, float] = {}
    try:
        for part in args.parts.split(","):
            figures |= {"digits": digits, "text": text, "detect": detect}[part](work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
