"""Linear probes on frozen, cached body features: the current headstart.probe (L-BFGS, C by
cross-validation on every labelled example, then a fit on all of them) against

  v010     the 0.1.0 probe it replaced (probe_v010.py: AdamW minibatches, early stopping on a
           stratified 20% held out, then a refit on all examples up to the chosen epoch), and
  sklearn  LogisticRegression(class_weight="balanced") with scikit-learn's defaults (C=1, lbfgs,
           100 iterations; where that stops with a ConvergenceWarning it is fitted again with
           max_iter=SKLEARN_MAX_ITER, and the result records it: its time includes both fits),

on the feature sets of probe_tasks.py (real pretrained cards on real data, one kept untouched),
with 1 to 64 labelled examples per class and the whole pool, over several seeds that redraw the
training examples. The score is balanced accuracy on each task's fixed held-out test set; every
fit is timed in this process (time.perf_counter). A cell of the table is a (task, size) pair;
"new >= X" there when the mean difference over the seeds is at least -TIE.

    .venv/bin/python benchmarks/bench_probe.py                 # everything: 7 tasks x 7 sizes x 5 seeds
    .venv/bin/python benchmarks/bench_probe.py --threads 1 --all-seeds 3   # the same, quicker on a busy machine
    .venv/bin/python benchmarks/bench_probe.py --quick         # 2 seeds, sizes 2, 8, 64
    .venv/bin/python benchmarks/bench_probe.py --tasks mnist-lite0,rotten-minilm --sizes 4,all --seeds 3
    .venv/bin/python benchmarks/bench_probe.py --timing --no-accuracy   # timing section only
    .venv/bin/python benchmarks/probe_tasks.py                 # compute / describe the feature sets

Probe variants from your own script (benchmarks/ on sys.path):

    from bench_probe import METHODS, evaluate, print_table
    def mine(x, y, k, seed):             # fit on (x, y), k classes; return a predict function
        ...; return lambda x_test: labels
    records = evaluate({"new": METHODS["new"], "mine": mine}, tasks=["mnist-lite0"], sizes=[8, None], seeds=3)
    print_table(records)                 # differences are taken against the first method

The timing section (--timing) fits each method on 80 x 1280 (MNIST, efficientnet_lite0, 8 per
class) and on all 5,000 MNIST images' features, median of 5 runs, first on a quiet machine, then
with one busy-looping Python process per CPU (os.cpu_count()) beside it, as a user's machine
running something else would be: a probe whose threads spin-wait on busy cores slows down badly.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np

from probe_tasks import TASKS, Task, load_task

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass
class Fitted:
    """What a method returns: a predict function, and anything about the fit worth recording."""

    predict: Predict
    info: dict[str, Any] = field(default_factory=dict)


# (x_train, y_train, num_classes, seed) -> a Fitted or a bare predict function
Method = Callable[[np.ndarray, np.ndarray, int, int], "Fitted | Predict"]

SIZES: tuple[int | None, ...] = (1, 2, 4, 8, 16, 64, None)  # examples per class; None: the whole pool
QUICK_SIZES: tuple[int | None, ...] = (2, 8, 64)
ALL_CAP = 500  # "all" takes at most this many pool examples of each class
TIE = 0.005  # a mean difference above -TIE counts as "not worse"
SKLEARN_MAX_ITER = 1000
OUT = Path(__file__).resolve().parent / "runs" / "bench_probe.json"  # runs/ is git-ignored


# -- the methods ----------------------------------------------------------------------------------------

def new_probe(x: np.ndarray, y: np.ndarray, k: int, seed: int) -> Fitted:
    """headstart.probe as fit calls it for a linear head: C by cross-validation, then a fit on all."""
    from headstart.heads import HeadSpec
    from headstart.probe import HeadTraining, train_head

    r = train_head(HeadSpec(), x, y, None, None, k, HeadTraining(seed=seed))
    return Fitted(r.predict, {"c": r.c, "folds": r.cv["folds"] if r.cv else 0, "iterations": r.iterations})


def v010_probe(x: np.ndarray, y: np.ndarray, k: int, seed: int) -> Fitted:
    """headstart 0.1.0's fit: 80/20 stratified split, early stopping, refit on all to the best epoch."""
    import torch

    from headstart.data.splits import stratified_split
    from headstart.heads import HeadSpec
    from probe_v010 import fit_v010

    head = fit_v010(HeadSpec(), x, y, k, seed, stratified_split)

    def predict(xt: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return head(torch.from_numpy(np.ascontiguousarray(xt, dtype=np.float32))).argmax(1).numpy()

    return Fitted(predict)


def sklearn_logreg(x: np.ndarray, y: np.ndarray, k: int, seed: int) -> Fitted:
    """LogisticRegression(class_weight="balanced"), defaults otherwise; max_iter raised only when
    the default stops short of convergence."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            clf = LogisticRegression(class_weight="balanced").fit(x, y)
            return Fitted(clf.predict, {"max_iter": clf.max_iter, "converged": True})
        except ConvergenceWarning:
            pass
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf = LogisticRegression(class_weight="balanced", max_iter=SKLEARN_MAX_ITER).fit(x, y)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return Fitted(clf.predict, {"max_iter": SKLEARN_MAX_ITER, "converged": converged})


METHODS: dict[str, Method] = {"new": new_probe, "v010": v010_probe, "sklearn": sklearn_logreg}


# -- evaluation -----------------------------------------------------------------------------------------

def size_name(size: int | None) -> str:
    return "all" if size is None else str(size)


def balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(y, pred))


def evaluate(
    methods: dict[str, Method],
    tasks: Iterable[str | Task] | None = None,
    sizes: Sequence[int | None] = SIZES,
    seeds: int = 5,
    all_seeds: int | None = None,
    log: Callable[[str], None] | None = lambda line: print(line, flush=True),
    on_task_done: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Fit every method on every (task, size, seed) draw of training examples and score it on the
    task's test set. Returns one record per fit: task, untouched, size ('all' or per class),
    seed, method, n_train, balanced_accuracy, seconds (the fit, not the prediction), and the
    method's info. `all_seeds`: fewer seeds for the whole pool, where fits are slowest (and the
    draw changes little). Sizes a task's pool cannot supply are skipped (and said so)."""
    records: list[dict[str, Any]] = []
    for t in tasks if tasks is not None else TASKS:
        task = load_task(t) if isinstance(t, str) else t
        for size in sizes:
            smallest = int(task.pool_per_class().min())
            if size is not None and size > smallest:
                if log:
                    log(f"{task.name}: skipping {size} per class (the pool has {smallest} of its smallest class)")
                continue
            cell: dict[str, list[float]] = {m: [] for m in methods}
            for seed in range(seeds if size is not None or all_seeds is None else all_seeds):
                idx = task.sample(size, seed, ALL_CAP)
                x, y = task.x_pool[idx], task.y_pool[idx]
                for name, method in methods.items():
                    t0 = time.perf_counter()
                    fitted = method(x, y, task.num_classes, seed)
                    seconds = time.perf_counter() - t0
                    if not isinstance(fitted, Fitted):
                        fitted = Fitted(fitted)
                    score = balanced_accuracy(task.y_test, np.asarray(fitted.predict(task.x_test)))
                    cell[name].append(score)
                    records.append({"task": task.name, "model": task.model, "untouched": task.untouched,
                                    "size": size_name(size), "seed": seed, "method": name, "n_train": len(y),
                                    "n_test": len(task.y_test), "balanced_accuracy": score,
                                    "seconds": seconds, **fitted.info})
            if log:
                log(f"{task.name:<22} {size_name(size):>4}/class  " +
                    "  ".join(f"{m} {np.mean(v):.3f}" for m, v in cell.items()))
        if on_task_done:
            on_task_done(records)
    return records


# -- the table ------------------------------------------------------------------------------------------

def _cells(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, dict[int, dict[str, Any]]]]:
    """(task, size) -> method -> seed -> record, in the order the records came."""
    cells: dict[tuple[str, str], dict[str, dict[int, dict[str, Any]]]] = {}
    for r in records:
        cells.setdefault((r["task"], r["size"]), {}).setdefault(r["method"], {})[r["seed"]] = r
    return cells


def summarize(records: list[dict[str, Any]], reference: str | None = None) -> list[dict[str, Any]]:
    """One row per (task, size): per method the mean and std of balanced accuracy and mean seconds,
    and the reference method's mean difference to each other method (over the seeds both ran)."""
    rows = []
    for (task, size), per in _cells(records).items():
        ref = reference or next(iter(per))
        any_record = next(iter(next(iter(per.values())).values()))
        row: dict[str, Any] = {"task": task, "size": size, "untouched": any_record["untouched"],
                               "n_train": any_record["n_train"], "methods": {}, "diff": {}}
        for m, by_seed in per.items():
            acc = [r["balanced_accuracy"] for r in by_seed.values()]
            row["methods"][m] = {"mean": float(np.mean(acc)), "std": float(np.std(acc)), "seeds": len(acc),
                                 "seconds": float(np.mean([r["seconds"] for r in by_seed.values()]))}
        for m, by_seed in per.items():
            if m != ref and ref in per:
                both = sorted(set(by_seed) & set(per[ref]))
                row["diff"][m] = float(np.mean([per[ref][s]["balanced_accuracy"] - by_seed[s]["balanced_accuracy"]
                                                for s in both]))
        row["reference"] = ref
        rows.append(row)
    return rows


def print_table(records: list[dict[str, Any]], reference: str | None = None, tie: float = TIE) -> list[dict[str, Any]]:
    """The table (task x size: balanced accuracy mean +- std per method, the reference's differences,
    mean fit seconds) and a line per method pair; returns summarize()'s rows."""
    rows = summarize(records, reference)
    if not rows:
        print("no results")
        return rows
    methods = list(rows[0]["methods"])
    ref = rows[0]["reference"]
    others = [m for m in methods if m != ref]
    head = (f"{'task':<24}{'size':>5}{'n':>6} " + "".join(f"{m:>15}" for m in methods) +
            "".join(f"{ref + '-' + m:>13}" for m in others) + "  " + "".join(f"{'s ' + m:>10}" for m in methods))
    print(head)
    print("-" * len(head))
    last = None
    for r in rows:
        if last is not None and r["task"] != last:
            print()
        last = r["task"]
        name = r["task"] + (" *" if r["untouched"] else "")
        line = f"{name:<24}{r['size']:>5}{r['n_train']:>6} "
        line += "".join(f"{r['methods'][m]['mean']:>8.3f}+-{r['methods'][m]['std']:.3f}" for m in methods)
        line += "".join(f"{r['diff'][m]:>+13.3f}" if m in r["diff"] else f"{'':>13}" for m in others)
        line += "  " + "".join(f"{r['methods'][m]['seconds']:>10.2f}" for m in methods)
        print(line)
    seeds = sorted({r["methods"][m]["seeds"] for r in rows for m in methods})
    print(f"\nbalanced accuracy on each task's held-out test set, mean +- std over {'/'.join(map(str, seeds))} seeds "
          f"(training draws); n: training examples; s: mean fit seconds; * the untouched task")
    for m in others:
        for label, subset in (("all tasks", rows), ("untouched task", [r for r in rows if r["untouched"]]),
                              ("tuned-on tasks", [r for r in rows if not r["untouched"]])):
            cells = [r for r in subset if m in r["diff"]]
            if not cells:
                continue
            ok = sum(r["diff"][m] >= -tie for r in cells)
            worst = min(cells, key=lambda r: r["diff"][m])
            print(f"{ref} >= {m} (mean difference >= -{tie}) in {ok} of {len(cells)} cells, {label}; worst: "
                  f"{worst['task']} {worst['size']}/class {worst['diff'][m]:+.3f} "
                  f"({worst['methods'][ref]['mean']:.3f} vs {worst['methods'][m]['mean']:.3f})")
    return rows


# -- timing ---------------------------------------------------------------------------------------------

class CpuHog:
    """One busy-looping Python process per CPU (os.cpu_count()) while the block runs: the machine
    as busy as a user's often is. Only the processes started here are stopped, by their handles."""

    def __init__(self, n: int | None = None) -> None:
        self.n = n or os.cpu_count() or 1
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> Self:
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.n)]
        time.sleep(0.5)  # let them reach the loop
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def timing(methods: dict[str, Method], repeats: int = 5) -> dict[str, Any]:
    """Median fit seconds of each method on MNIST efficientnet_lite0 features, 80 x 1280 (8 per
    class) and 5,000 x 1280 (every image, pool and test), quiet and beside a CPU hog."""
    task = load_task("mnist-lite0")
    idx = task.sample(8, 0)
    sets = {"80 x 1280": (task.x_pool[idx], task.y_pool[idx]),
            "5000 x 1280": (np.concatenate([task.x_pool, task.x_test]), np.concatenate([task.y_pool, task.y_test]))}
    out: dict[str, Any] = {"repeats": repeats, "cpu_count": os.cpu_count(),
                           "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                           "seconds": {}}

    def measure(label: str) -> None:
        load = os.getloadavg()[0]  # the hog's own load shows after a minute: this says what else was running
        out.setdefault("load_before", {})[label] = load
        print(f"  {label}: 1-minute load average before {load:.1f}", flush=True)
        for data, (x, y) in sets.items():
            for m, method in methods.items():
                times = []
                for r in range(repeats):
                    t0 = time.perf_counter()
                    method(x, y, task.num_classes, 0)
                    times.append(time.perf_counter() - t0)
                out["seconds"].setdefault(data, {}).setdefault(m, {})[label] = {"median": statistics.median(times),
                                                                               "all": times}
                print(f"  {label:<5} {data:<12} {m:<8} median {statistics.median(times):.3f} s "
                      f"(min {min(times):.3f}, max {max(times):.3f})", flush=True)

    for m, method in methods.items():  # warm-up: imports and first-call costs are not the fit's
        method(*sets["80 x 1280"], task.num_classes, 0)
    print(f"timing: median of {repeats} fits, in this process; hog = {out['cpu_count']} busy-looping processes "
          f"(os.cpu_count(); {out['usable_cpus']} CPUs usable here)", flush=True)
    measure("quiet")
    with CpuHog():
        measure("hog")
    print(f"\n{'features':<13}{'method':<9}{'quiet s':>9}{'hog s':>9}{'hog/quiet':>11}")
    for data, per in out["seconds"].items():
        for m, t in per.items():
            q, h = t["quiet"]["median"], t["hog"]["median"]
            print(f"{data:<13}{m:<9}{q:>9.3f}{h:>9.3f}{h / q:>10.1f}x")
    return out


# -- command line ---------------------------------------------------------------------------------------

def _sizes(text: str) -> list[int | None]:
    return [None if s.strip() == "all" else int(s) for s in text.split(",")]


def environment() -> dict[str, Any]:
    """Versions, and which headstart.probe ran: it is being changed, and a result is only as good
    as knowing which code produced it (the file's sha256, and git's HEAD and whether it was edited)."""
    import hashlib

    import scipy
    import sklearn
    import torch

    import headstart.probe

    probe_file = Path(headstart.probe.__file__)
    repo = probe_file.parent.parent

    def git(*cmd: str) -> str:
        r = subprocess.run(["git", "-C", str(repo), *cmd], capture_output=True, text=True, check=False)
        return r.stdout.strip() if r.returncode == 0 else ""

    return {"probe_sha256": hashlib.sha256(probe_file.read_bytes()).hexdigest(), "git_head": git("rev-parse", "HEAD"),
            "probe_edited_since_head": bool(git("status", "--porcelain", "--", str(probe_file))),
            "python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
            "sklearn": sklearn.__version__, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "machine": platform.machine()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, of: {', '.join(TASKS)}")
    ap.add_argument("--sizes", default=",".join(size_name(s) for s in SIZES), help="examples per class; 'all': the pool")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--all-seeds", type=int, default=None, help="seeds for size 'all' (default: --seeds)")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of: {', '.join(METHODS)}; "
                                                                 "differences are taken against the first")
    ap.add_argument("--quick", action="store_true", help="2 seeds, sizes 2,8,64")
    ap.add_argument("--timing", action="store_true", help="also time the methods quiet and beside a CPU hog")
    ap.add_argument("--timing-repeats", type=int, default=5)
    ap.add_argument("--no-accuracy", action="store_true", help="skip the accuracy table (with --timing)")
    ap.add_argument("--threads", type=int, default=None,
                    help="BLAS and torch threads for every method (default: the libraries' own; the new probe "
                         "uses one whatever this says). On a shared machine 1 keeps the others' fits from "
                         "spin-waiting on busy cores")
    ap.add_argument("--out", type=Path, default=OUT, help=f"per-seed results as JSON (default {OUT})")
    args = ap.parse_args()
    methods = {m: METHODS[m] for m in args.methods.split(",")}
    tasks = args.tasks.split(",")
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        ap.error(f"unknown tasks {unknown}; known: {', '.join(TASKS)}")
    sizes = list(QUICK_SIZES) if args.quick else _sizes(args.sizes)
    seeds = 2 if args.quick else args.seeds
    if args.threads:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(limits=args.threads)  # for the rest of the process
    report: dict[str, Any] = {"threads": args.threads, "argv": sys.argv[1:], "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                              "environment": environment(), "tie": TIE, "all_cap": ALL_CAP}

    def save(records: list[dict[str, Any]] | None = None) -> None:
        if records is not None:
            report["results"] = records
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(f".{args.out.name}.{os.getpid()}")
        tmp.write_text(json.dumps(report, indent=1))
        os.replace(tmp, args.out)

    t0 = time.perf_counter()
    if not args.no_accuracy:
        records = evaluate(methods, tasks, sizes, seeds, args.all_seeds, on_task_done=save)
        report["summary"] = summarize(records)
        print()
        print_table(records)
        sk = [r for r in records if r["method"] == "sklearn"]
        raised = [r for r in sk if r.get("max_iter") != 100]
        if sk:
            print(f"sklearn: max_iter raised to {SKLEARN_MAX_ITER} in {len(raised)} of {len(sk)} fits "
                  f"(default 100 stopped short of convergence); still not converged: "
                  f"{sum(not r.get('converged', True) for r in raised)}")
        save(records)
    if args.timing:
        print()
        report["timing"] = timing(methods, args.timing_repeats)
        save()
    print(f"\nresults: {args.out} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
