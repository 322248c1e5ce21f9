"""What a user waits for, on a quiet machine and beside a CPU hog (one busy-looping process per CPU,
as a laptop running something else): start-up, a first fit and a cached re-fit of the demo's
digits (whole processes, as typed), the linear probe in-process, and (--advise) `headstart advise`.

Each figure is printed quiet and loaded side by side, with the ratios the targets are about: the
cached re-fit against the first fit, the hog against quiet.

    .venv/bin/python benchmarks/bench_load.py              # start-up, fits, probe
    .venv/bin/python benchmarks/bench_load.py --advise     # and advise (minutes)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench_probe import CpuHog, METHODS, timing

ROOT = Path(__file__).resolve().parent.parent
HEADSTART = [sys.executable, "-m", "headstart.cli"]


def demo_digits() -> Path:
    """The demo's 10-per-class digits (written once, as `headstart demo` writes them)."""
    from headstart.demo import write_digit_folders

    train, _ = write_digit_folders(ROOT / "headstart-demo" / "digits-10shot-100test-seed0", 10, 100, 0)
    return train


def seconds(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return dt


def median_of(fn: Callable[[], float], repeats: int) -> float:
    return statistics.median(fn() for _ in range(repeats))


def commands(work: Path, repeats: int) -> dict[str, float]:
    """Start-up, and the demo's first fit (empty cache) against cached re-fits, in seconds."""
    data = demo_digits()
    out: dict[str, float] = {}
    out["headstart --help"] = median_of(lambda: seconds([*HEADSTART, "--help"]), repeats)
    out["headstart models"] = median_of(lambda: seconds([*HEADSTART, "models"]), repeats)
    fit = [*HEADSTART, "fit", str(data), "--strategy", "linear-probe", "--quiet", "--overwrite"]

    def first() -> float:
        cache = work / "cache-first"
        shutil.rmtree(cache, ignore_errors=True)
        return seconds([*fit, "--out", str(work / "first"), "--cache-dir", str(cache)])

    out["fit, first (features computed)"] = median_of(first, max(1, repeats // 2))
    cache = ["--cache-dir", str(work / "cache")]
    seconds([*fit, "--out", str(work / "warm"), *cache])  # fills the cache
    out["fit again, cached"] = median_of(lambda: seconds([*fit, "--out", str(work / "again"), *cache]), repeats)
    out["fit again, cached, --head-c 0.1"] = median_of(
        lambda: seconds([*fit, "--out", str(work / "c"), "--head-c", "0.1", *cache]), repeats)
    return out


def advise_seconds(work: Path) -> float:
    data = demo_digits()
    cache = ["--cache-dir", str(work / "cache")]
    seconds([*HEADSTART, "advise", str(data), "--out", str(work / "advice.html"), *cache, "--quiet"])  # fills it
    return seconds([*HEADSTART, "advise", str(data), "--out", str(work / "advice.html"), *cache, "--quiet"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--advise", action="store_true", help="Also time `headstart advise` (minutes).")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="headstart-bench-load-"))
    os.environ.pop("HEADSTART_CACHE", None)
    try:
        quiet = commands(work, args.repeats)
        with CpuHog() as hog:
            loaded = commands(work, args.repeats)
        if args.advise:
            quiet["advise, cached features"] = advise_seconds(work)
            with CpuHog():
                loaded["advise, cached features"] = advise_seconds(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"whole processes, median of {args.repeats} (first fits: of {max(1, args.repeats // 2)}); "
          f"hog = {hog.n} busy-looping processes")
    print(f"{'':<36} {'quiet':>8} {'hog':>8} {'hog/quiet':>10}")
    for name in quiet:
        print(f"{name:<36} {quiet[name]:>7.2f}s {loaded[name]:>7.2f}s {loaded[name] / quiet[name]:>9.1f}x")
    for label, figures in (("quiet", quiet), ("hog", loaded)):
        ratio = figures["fit, first (features computed)"] / figures["fit again, cached"]
        print(f"{label}: the cached re-fit is {ratio:.1f}x faster than the first fit (target >= 5x)")
    print()
    timing({"new": METHODS["new"]}, repeats=args.repeats)  # the probe in-process, quiet and beside the hog
    return 0


if __name__ == "__main__":
    sys.exit(main())
