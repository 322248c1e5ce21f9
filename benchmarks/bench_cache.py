"""Benchmark 2: a second `fit` on the same data and model reuses the feature cache.
Target: >= 10x faster wall time than the first for 500 images, identical val_accuracy.

Both fits run in this process (headstart.fit), so the ratio compares the work of a fit,
not Python start-up; the same two fits through the `headstart` command are timed too.

    .venv/bin/python benchmarks/bench_cache.py [--model efficientnet_lite0] [--n 500]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import digits, now

import headstart


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--n", type=int, default=500)
    args = ap.parse_args()
    data = digits(args.n // 10)
    work = Path(tempfile.mkdtemp(prefix="headstart-bench-cache-"))
    try:
        cache = work / "cache"
        t = now()
        first = headstart.fit(data, model=args.model, out=work / "run1", cache_dir=cache, strategy="linear-probe")
        t_first = now() - t
        t = now()
        second = headstart.fit(data, model=args.model, out=work / "run2", cache_dir=cache, strategy="linear-probe")
        t_second = now() - t
        a, b = first.metrics, second.metrics
        assert not a["cache_hit"] and b["cache_hit"], (a["cache_hit"], b["cache_hit"])
        same = a["val_accuracy"] == b["val_accuracy"]
        ratio = t_first / t_second
        print(f"{args.n} images, {args.model}: first fit {t_first:.2f}s (extraction {a['extract_seconds']:.2f}s), "
              f"second fit {t_second:.2f}s (cache read {b['extract_seconds']:.3f}s, head {b['train_seconds']:.2f}s)")
        print(f"in-process ratio {ratio:.1f}x (target >= 10x); val_accuracy {a['val_accuracy']:.4f} vs "
              f"{b['val_accuracy']:.4f}: {'identical' if same else 'DIFFERENT'}")
        exe = str(Path(sys.executable).parent / "headstart")
        cli = []
        for i, c in enumerate((work / "cli-cache", work / "cli-cache")):
            t = now()
            r = subprocess.run([exe, "fit", str(data), "--model", args.model, "--out", str(work / f"cli{i}"),
                                "--cache-dir", str(c), "--strategy", "linear-probe", "--json"], capture_output=True, text=True,
                               env={**os.environ, "PYTHONWARNINGS": "ignore"})
            cli.append((now() - t, json.loads(r.stdout)))
        print(f"CLI (with Python start-up): first {cli[0][0]:.2f}s, second {cli[1][0]:.2f}s -> "
              f"{cli[0][0] / cli[1][0]:.1f}x; val_accuracy identical: "
              f"{cli[0][1]['val_accuracy'] == cli[1][1]['val_accuracy']}")
        return 0 if ratio >= 10 and same else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
