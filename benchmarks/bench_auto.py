"""Does `fit --strategy auto` choose well on data we did not tune on? (issue 18)

For image tasks of different kinds (bench_ranking.py's data) at a few labelled sizes, every
candidate strategy is fitted through the public API on the same training folder -- the linear
probe, lp-ft, finetune -- and `auto`, and each run is scored on the task's held-out folder
(balanced accuracy, `headstart.evaluate`). Each fit is timed whole (extraction from a warm feature
cache included). Printed per (task, size): every strategy's accuracy and time, what auto chose,
and the issue's two targets:

  accuracy  auto >= the best of {linear-probe, lp-ft, finetune} - 0.02
  time      auto <= 2 x (the time of the strategy it chose) + the linear probe's time + 60 s

Body training on 2 CPU cores takes minutes per fit: the default is a small grid.

    .venv/bin/python benchmarks/bench_auto.py                                # 4 tasks x 5, 10 per class, 1 seed
    .venv/bin/python benchmarks/bench_auto.py --tasks shapes --sizes 10 --seeds 2 --model efficientnet_lite0
    .venv/bin/python benchmarks/bench_auto.py --reuse runs/bench_auto.json --out runs/bench_auto2.json  # auto only
    .venv/bin/python benchmarks/bench_auto.py --rank-check efficientnet_lite0,efficientnet_lite1,efficientnet_lite2,mobilenet_v2 \
        --tasks shapes,skimage-colour-32 --sizes 10     # rank's pick against fine-tuned accuracy
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import ROOT, digits
from probe_tasks import candy_crops, shapes, skimage_colour_patches, skimage_patches, sklearn_digits_folder

HERE = Path(__file__).resolve().parent
CACHE = ROOT / "cache"
STRATEGIES = ("linear-probe", "lp-ft", "finetune", "auto")
TEST_PER_CLASS = 30


def _folder_split(folder: Path, test_per_class: int) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """(pool, test) files per class of one folder: test_per_class of each class held out, seeded."""
    rng = np.random.default_rng(0)
    pool, test = {}, {}
    for c in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(c.iterdir())
        held = set(rng.choice(len(files), size=test_per_class, replace=False).tolist())
        test[c.name] = [f for i, f in enumerate(files) if i in held]
        pool[c.name] = [f for i, f in enumerate(files) if i not in held]
    return pool, test


def _two_folders(pool_dir: Path, test_dir: Path) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    rng = np.random.default_rng(0)

    def files(d: Path, cap: int | None) -> dict[str, list[Path]]:
        out = {}
        for c in sorted(p for p in d.iterdir() if p.is_dir()):
            f = sorted(c.iterdir())
            out[c.name] = f if cap is None or len(f) <= cap else [f[i] for i in sorted(rng.choice(len(f), cap, replace=False))]
        return out

    return files(pool_dir, None), files(test_dir, TEST_PER_CLASS)


TASKS = {
    "mnist": lambda: _folder_split(digits(90), TEST_PER_CLASS),
    "sklearn-digits": lambda: _folder_split(sklearn_digits_folder(90), TEST_PER_CLASS),
    "candy": lambda: _two_folders(candy_crops("pool", 90, 1), candy_crops("test", 50, 2)),
    "shapes": lambda: _two_folders(shapes("pool", 60, 0), shapes("test", 30, 1)),
    "skimage-colour-32": lambda: _two_folders(
        skimage_colour_patches("pool", 60, 2, sides=(96, 192), shrink_to=32),
        skimage_colour_patches("test", 30, 3, sides=(96, 192), shrink_to=32)),
    # UNTOUCHED while auto was designed: run once, at the end (--tasks skimage-patches)
    "skimage-patches": lambda: _two_folders(skimage_patches("pool", 60, 0), skimage_patches("test", 30, 1)),
}


def _link_folder(root: Path, files: dict[str, list[Path]]) -> Path:
    for c, fs in files.items():
        (root / c).mkdir(parents=True, exist_ok=True)
        for f in fs:
            os.symlink(f.resolve(), root / c / f.name)
    return root


def draw(task: str, per_class: int, seed: int, root: Path) -> tuple[Path, Path]:
    """(train, test) folders of links under root: per_class of each class drawn from the task's pool
    (seeded by seed and size), and the task's held-out images."""
    pool, test = TASKS[task]()
    rng = np.random.default_rng([seed, per_class])
    train = {c: [fs[i] for i in sorted(rng.choice(len(fs), per_class, replace=False))] for c, fs in pool.items()}
    return _link_folder(root / "train", train), _link_folder(root / "test", test)


def cell(task: str, per_class: int, seed: int, model: str, work: Path, reuse: dict | None = None) -> dict:
    """Every strategy fitted on one draw; those in `reuse` (an earlier run's figures for the same cell,
    --reuse) are taken from there, so that a change to auto is measured without refitting the rest."""
    import headstart

    root = work / f"{task}-{per_class}-{seed}"
    train_dir, test_dir = draw(task, per_class, seed, root)
    out: dict = {"task": task, "per_class": per_class, "seed": seed, "model": model, "fits": dict(reuse or {})}
    # warm the feature cache first, so that every strategy's time starts from the same place
    headstart.fit(train_dir, model=model, strategy="linear-probe", out=root / "warm", cache_dir=CACHE, seed=seed)
    for s in STRATEGIES:
        if s in out["fits"]:
            continue
        t = time.perf_counter()
        run = headstart.fit(train_dir, model=model, strategy=s, out=root / s, cache_dir=CACHE, seed=seed)
        seconds = time.perf_counter() - t
        score = headstart.evaluate(run, test_dir, cache_dir=CACHE)
        out["fits"][s] = {"balanced_accuracy": score["balanced_accuracy"], "seconds": seconds,
                          "strategy": run.metrics["strategy"], "reason": run.metrics.get("strategy_reason")}
        print(f"    {task} {per_class}/class seed {seed} {s:<13} {score['balanced_accuracy']:.3f} {seconds:6.0f}s"
              + (f"  (chose {run.metrics['strategy']})" if s == "auto" else ""), flush=True)
    return out


def finetuned_ranking(task: str, per_class: int, seed: int, cards: list[str], work: Path) -> dict:
    """`rank`'s default order on the training folder against each card's fine-tuned held-out accuracy."""
    import headstart

    root = work / f"rank-{task}-{per_class}-{seed}"
    train_dir, test_dir = draw(task, per_class, seed, root)
    ranking = headstart.rank_models(train_dir, cards, cache_dir=CACHE)
    accuracy = {}
    for card in cards:
        run = headstart.fit(train_dir, model=card, strategy="finetune", out=root / card, cache_dir=CACHE, seed=seed)
        accuracy[card] = headstart.evaluate(run, test_dir, cache_dir=CACHE)["balanced_accuracy"]
        print(f"    {task} {per_class}/class seed {seed} {card:<20} finetune {accuracy[card]:.3f}", flush=True)
    pick = ranking["models"][0]["model"]
    return {"task": task, "per_class": per_class, "seed": seed, "metric": ranking["metric"], "pick": pick,
            "finetuned": accuracy, "regret": max(accuracy.values()) - accuracy[pick]}


def verdicts(c: dict) -> tuple[bool, bool, str]:
    f = c["fits"]
    best = max(f[s]["balanced_accuracy"] for s in STRATEGIES if s != "auto")
    auto = f["auto"]
    chosen = auto["strategy"]
    acc_ok = auto["balanced_accuracy"] >= best - 0.02
    limit = 2 * f[chosen]["seconds"] + f["linear-probe"]["seconds"] + 60 if chosen in f else float("nan")
    time_ok = auto["seconds"] <= limit
    return acc_ok, time_ok, (f"auto chose {chosen}: {auto['balanced_accuracy']:.3f} vs best {best:.3f} "
                             f"({'ok' if acc_ok else 'MISSED'}); {auto['seconds']:.0f}s vs limit {limit:.0f}s "
                             f"({'ok' if time_ok else 'MISSED'})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default="shapes,skimage-colour-32,sklearn-digits,candy")
    ap.add_argument("--sizes", default="5,10")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--out", default=str(HERE / "runs" / "bench_auto.json"))
    ap.add_argument("--reuse", default=None, metavar="JSON",
                    help="take the figures of every strategy but auto from an earlier --out of the same cells")
    ap.add_argument("--rank-check", default=None, metavar="CARDS",
                    help="instead: fine-tune each of these cards (comma-separated) and report the top-1 regret "
                         "of rank's default order against their fine-tuned accuracy")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="headstart-bench-auto-"))
    if args.rank_check:
        try:
            rows = [finetuned_ranking(t, int(n), seed, args.rank_check.split(","), work)
                    for t in args.tasks.split(",") for n in args.sizes.split(",") for seed in range(args.seeds)]
        finally:
            shutil.rmtree(work, ignore_errors=True)
        for r in rows:
            print(f"{r['task']:<18}{r['per_class']:>4}  {r['metric']} picks {r['pick']}; fine-tuned: "
                  + ", ".join(f"{c} {a:.3f}" for c, a in r["finetuned"].items()) + f"; regret {r['regret']:.3f}")
        print(f"mean top-1 regret against fine-tuned accuracy: {np.mean([r['regret'] for r in rows]):.3f}")
        return 0
    cells = []
    earlier = {}
    if args.reuse:
        for c in json.loads(Path(args.reuse).read_text()):
            earlier[(c["task"], c["per_class"], c["seed"], c["model"])] = {
                s: f for s, f in c["fits"].items() if s != "auto"}
    try:
        for task in args.tasks.split(","):
            for n in (int(s) for s in args.sizes.split(",")):
                for seed in range(args.seeds):
                    cells.append(cell(task, n, seed, args.model, work, earlier.get((task, n, seed, args.model))))
                    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                    Path(args.out).write_text(json.dumps(cells, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'task':<18}{'n':>4}" + "".join(f"{s:>16}" for s in STRATEGIES))
    ok = True
    for c in cells:
        f = c["fits"]
        print(f"{c['task']:<18}{c['per_class']:>4}" + "".join(
            f"{f[s]['balanced_accuracy']:>9.3f} {f[s]['seconds']:>5.0f}s" for s in STRATEGIES))
        acc_ok, time_ok, text = verdicts(c)
        ok &= acc_ok and time_ok
        print(f"{'':<22}{text}")
    print("all targets met" if ok else "targets missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
