"""Benchmark 4: extracting features of 5,000 images keeps peak memory under 2.5 GB.

Runs `headstart fit` on the 5,000 MNIST digits in a child process and samples the
resident memory of that process and its DataLoader workers (summed, which counts shared
pages twice, so it overstates) every 50 ms. Leaves the cache in place for bench_head.py.

    .venv/bin/python benchmarks/bench_memory.py [--model efficientnet_lite0]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

from common import ROOT, digits

LIMIT_GB = 2.5


def tree_rss(p: psutil.Process) -> int:
    total = 0
    for q in [p, *p.children(recursive=True)]:
        try:
            total += q.memory_info().rss
        except psutil.Error:
            pass
    return total


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="efficientnet_lite0")
    args = ap.parse_args()
    data = digits(500)
    cache = ROOT / "cache-5000"
    exe = str(Path(sys.executable).parent / "headstart")
    cmd = [exe, "fit", str(data), "--model", args.model, "--out", str(ROOT / "run-5000"), "--cache-dir", str(cache),
           "--strategy", "linear-probe", "--overwrite"]
    shutil.rmtree(cache, ignore_errors=True)  # a fresh cache, so that extraction really runs
    t = time.perf_counter()
    proc = subprocess.Popen(cmd + ["--json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(ps))
        time.sleep(0.05)
    out = proc.stdout.read() if proc.stdout else ""
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        print(f"fit failed with exit code {proc.returncode}")
        return 1
    m = json.loads(out)
    size = sum(f.stat().st_size for f in cache.rglob("features.npy")) / 1e6
    print(f"5,000 images, {args.model}: fit {wall:.0f}s (extraction {m['extract_seconds']:.0f}s, "
          f"{m['extract_images_per_second']} img/s), features on disk {size:.1f} MB")
    print(f"peak resident memory (process + workers) {peak / 1e9:.2f} GB (target < {LIMIT_GB} GB); "
          f"val_accuracy {m['val_accuracy']:.3f} on {m['n_val']} digits")
    return 0 if peak / 1e9 < LIMIT_GB else 1


if __name__ == "__main__":
    sys.exit(main())
