"""Benchmark 3 of the ranking issue: on MNIST digits with 10 labelled per class, the advisor's
report shows transfer well above training from scratch, and its recommended strategy agrees
with what the strategies actually reach there (each fitted on the same 100 digits, 3 seeds,
scored on 1,000 held-out digits).

    .venv/bin/python benchmarks/bench_advise.py [--seeds 3]
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
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--strategies", default="linear-probe,lp-ft,finetune")
    args = ap.parse_args()
    train, test = write_digit_folders(ROOT / "digits-10shot-100test-seed0", 10, 100, 0)
    work = Path(tempfile.mkdtemp(prefix="headstart-bench-advise-"))
    try:
        report = headstart.advise(train, seeds=args.seeds, out=ROOT / "advice-mnist10.html", cache_dir=ROOT / "cache")
        print(f"advise: {report['verdict']}; {report['recommended_model']} with {report['recommended_strategy']}; "
              f"gain {report['transfer_gain']:+.3f} at {report['gain_at_per_class']} per class ({report['seconds']} s)")
        for row in report["learning_curve"]:
            print(f"  {row['per_class']:>3} per class: " + ", ".join(
                f"{k} {row[k]['mean']:.3f} +- {row[k]['std']:.3f}" for k in ("transfer", "scratch", "pixels")
                if row[k]["mean"] is not None))
        model = report["recommended_model"]
        reached: dict[str, list[float]] = {}
        for seed in range(args.seeds):
            for strategy in args.strategies.split(","):
                run = headstart.fit(train, model=model, out=work / f"{strategy}-{seed}", strategy=strategy, seed=seed,
                                    augment="crop", cache_dir=ROOT / "cache")
                reached.setdefault(strategy, []).append(headstart.evaluate(run, test, cache_dir=ROOT / "cache")["accuracy"])
        print(f"what the strategies reach with {model} on 1,000 held-out digits ({args.seeds} seeds):")
        for s, accs in reached.items():
            mark = "  <- recommended" if s == report["recommended_strategy"] else ""
            print(f"  {s:<13} {np.mean(accs):.3f} +- {np.std(accs):.3f}{mark}")
        best = max(reached, key=lambda s: np.mean(reached[s]))
        rec = report["recommended_strategy"]
        within = np.mean(reached[best]) - np.mean(reached[rec]) <= max(np.std(reached[best]), np.std(reached[rec]))
        above = report["transfer_gain"] is not None and report["transfer_gain"] > 0.05
        print(f"transfer well above scratch: {above}; recommended {rec} is "
              f"{'the best' if best == rec else f'within one standard deviation of the best ({best})' if within else f'BELOW the best ({best})'}")
        (ROOT / "bench_advise.json").write_text(json.dumps({"report": {k: report[k] for k in (
            "recommended_model", "recommended_strategy", "transfer_gain", "learning_curve")}, "reached": reached},
            indent=2))
        return 0 if above and (best == rec or within) else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
