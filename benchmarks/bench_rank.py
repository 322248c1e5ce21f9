"""Benchmarks 1 and 2 of the ranking issue.

1. `rank` over the 4 built-in image cards on 1,000 images costs <= 1.2x extracting their
   features alone (the scores are cheap next to extraction), and a second `rank` on the same
   data costs < 5% of the first. Measured in this process (the API), and through the CLI.
2. `headstart.rank.logme` on N = 10,000, D = 1,280, C = 100 runs in < 3 s.

    .venv/bin/python benchmarks/bench_rank.py [--n 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import digits

from headstart.data import read_image_data
from headstart.features import FeatureCache, extract
from headstart.rank import logme, rank_models
from headstart.runtime import pick_device
from headstart.surgery import split
from headstart.zoo import BUILTIN_CARDS, load_network


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    data = digits(args.n // 10)
    samples = read_image_data(data)
    work = Path(tempfile.mkdtemp(prefix="headstart-bench-rank-"))
    ok = True
    try:
        # extraction alone: the same pipeline, one card after another, into a fresh cache
        t = time.perf_counter()
        for card in BUILTIN_CARDS.values():
            extract(lambda c=card: split(load_network(c), c.classifier)[0], card.fingerprint(), card.preprocessing,
                    samples.paths, card.num_features, FeatureCache(work / "extract-only"), pick_device())
        t_extract = time.perf_counter() - t
        t = time.perf_counter()
        first = rank_models(data, cache_dir=work / "rank")
        t_first = time.perf_counter() - t
        t = time.perf_counter()
        rank_models(data, cache_dir=work / "rank")
        t_second = time.perf_counter() - t
        r1, r2 = t_first / t_extract, t_second / t_first
        ok &= r1 <= 1.2 and r2 < 0.05
        print(f"{args.n} images, 4 cards: extraction alone {t_extract:.1f}s; rank {t_first:.1f}s -> {r1:.2f}x "
              f"(target <= 1.2); second rank {t_second:.2f}s -> {100 * r2:.1f}% of the first (target < 5%)")
        print("  " + ", ".join(f"{m['model']} logme {m['logme']:.3f}" for m in first["models"]))
        exe = str(Path(sys.executable).parent / "headstart")
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        times = []
        for _ in range(2):
            t = time.perf_counter()
            subprocess.run([exe, "rank", str(data), "--cache-dir", str(work / "cli"), "--quiet"], env=env,
                           capture_output=True, check=True)
            times.append(time.perf_counter() - t)
        print(f"  through the CLI (Python start-up included): first {times[0]:.1f}s, second {times[1]:.1f}s -> "
              f"{100 * times[1] / times[0]:.1f}%")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rng = np.random.default_rng(0)
    y = rng.integers(0, 100, 10_000)
    f = np.maximum(0.5 * rng.normal(size=(100, 1280))[y] + rng.normal(size=(10_000, 1280)), 0).astype(np.float32)
    t = time.perf_counter()
    value = logme(f, y)
    t_logme = time.perf_counter() - t
    ok &= t_logme < 3
    print(f"logme on N=10,000, D=1,280, C=100: {t_logme:.2f}s (target < 3 s), value {value:.4f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
