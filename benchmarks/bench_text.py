"""Text benchmark on the Rotten Tomatoes development reviews (movies a-m; OFFLINE.md): balanced
accuracy on a by-movie held-out split (30% of the movies), mean over seeds, with 8 and 64
labelled reviews per class and with all training rows, for

  minilm linear-probe   MiniLM sentence embeddings (cached) + a linear head
  minilm lp-ft          linear probe, then the whole encoder fine-tuned
  glove frozen          GloVe 6B 50-d embeddings kept fixed; fit's auto encoder over them: their
                        mean (a linear probe) below 200 per class, else a BiLSTM (reading the
                        vectors through a trained projection), + head
  glove finetune        the same, embeddings trained too (at a tenth of the rate)
  random embeddings     the same network from random embeddings (no transfer)
  tf-idf                TF-IDF (words and bigrams) + logistic regression, C by cross-validation

Targets: every transfer route above TF-IDF at every size; MiniLM fine-tuned above its linear
probe with all rows. MiniLM lp-ft fine-tunes 8 epochs at 8 and 64 per class, 1 with all rows
(22M parameters on 2 CPU cores: one epoch over ~3,600 reviews takes minutes).

    .venv/bin/python benchmarks/bench_text.py [--seeds 5] [--sizes 8,64,all]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from common import ROOT
from rotten import by_movie_split, dev_rows, sample_per_class, write_csv

import headstart
from headstart.text.network import TextOptions

METHODS = {
    "minilm linear-probe": dict(model="minilm_l6", strategy="linear-probe"),
    "minilm lp-ft": dict(model="minilm_l6", strategy="lp-ft"),
    "glove frozen": dict(model="glove_6b_50d", text=TextOptions(embeddings="frozen")),
    "glove finetune": dict(model="glove_6b_50d", text=TextOptions(embeddings="finetune")),
    "random embeddings": dict(model="glove_6b_50d", text=TextOptions(embeddings="random")),
}
TRANSFER = ("minilm linear-probe", "minilm lp-ft", "glove frozen", "glove finetune")
MARGIN = 0.005  # "beats TF-IDF": by at least this much balanced accuracy; a smaller gap is a tie


def tfidf(train: list[dict], test: list[dict]) -> float:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import balanced_accuracy_score

    warnings.filterwarnings("ignore", category=FutureWarning, module="sklearn")  # LogisticRegressionCV's 1.10 notices

    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    x = vec.fit_transform([r["text"] for r in train])
    y = [r["label"] for r in train]
    clf = LogisticRegressionCV(Cs=[0.1, 1, 10, 100], cv=3, max_iter=3000, class_weight="balanced").fit(x, y)
    return float(balanced_accuracy_score([r["label"] for r in test], clf.predict(vec.transform([r["text"] for r in test]))))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--sizes", default="8,64,all")
    ap.add_argument("--methods", default=",".join(["tf-idf", *METHODS]))
    args = ap.parse_args()
    sizes = [None if s == "all" else int(s) for s in args.sizes.split(",")]
    methods = args.methods.split(",")
    rows = dev_rows()
    work = Path(tempfile.mkdtemp(prefix="headstart-bench-text-"))
    results: dict[str, dict[str, list[float]]] = {}
    seconds: dict[str, float] = {}
    try:
        for seed in range(args.seeds):
            train_all, test = by_movie_split(rows, 0.3, seed)
            test_csv = write_csv(test, work / f"s{seed}" / "test.csv")
            for size in sizes:
                name = "all" if size is None else str(size)
                train = sample_per_class(train_all, size, seed)
                train_csv = write_csv(train, work / f"s{seed}" / f"train-{name}.csv")
                for m in methods:
                    t0 = time.perf_counter()
                    if m == "tf-idf":
                        score = tfidf(train, test)
                    else:
                        kw = dict(METHODS[m])
                        if m == "minilm lp-ft":  # fine-tuning 22M parameters on a CPU: fewer epochs with more data
                            kw["epochs"] = 1 if size is None else 8
                        run = headstart.fit(train_csv, out=work / "run", overwrite=True, seed=seed,
                                            cache_dir=ROOT / "cache", **kw)
                        score = headstart.evaluate(run, test_csv, cache_dir=ROOT / "cache")["balanced_accuracy"]
                    results.setdefault(name, {}).setdefault(m, []).append(score)
                    seconds[m] = seconds.get(m, 0.0) + time.perf_counter() - t0
                    print(f"seed {seed} size {name:>3} {m:<20} balanced accuracy {score:.3f} "
                          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nbalanced accuracy on held-out movies, mean +- std over {args.seeds} seeds "
          f"({len(rows)} development rows, 30% of the movies held out per seed)")
    print(f"{'per class':<10}" + "".join(f"{m:>22}" for m in methods))
    for name, per in results.items():
        print(f"{name:<10}" + "".join(f"{np.mean(per[m]):>14.3f} +- {np.std(per[m]):.3f}" for m in methods))
    print("seconds per method (all seeds and sizes): " + ", ".join(f"{m} {s:.0f}" for m, s in seconds.items()))
    ok = True
    if "tf-idf" in methods:
        for name, per in results.items():
            for m in TRANSFER:
                if m in per and np.mean(per[m]) < np.mean(per["tf-idf"]) + MARGIN:
                    ok = False
                    print(f"MISSED: {m} at {name} per class {np.mean(per[m]):.4f} vs tf-idf {np.mean(per['tf-idf']):.4f} "
                          f"(a win needs a margin of at least {MARGIN})")
    if "all" in results and {"minilm lp-ft", "minilm linear-probe"} <= set(results["all"]):
        lp, ft = np.mean(results["all"]["minilm linear-probe"]), np.mean(results["all"]["minilm lp-ft"])
        print(f"all rows: minilm lp-ft {ft:.3f} vs linear probe {lp:.3f} ({'above' if ft > lp else 'NOT above'})")
        ok = ok and ft > lp
    (ROOT / "bench_text.json").parent.mkdir(parents=True, exist_ok=True)
    (ROOT / "bench_text.json").write_text(json.dumps({"results": results, "seconds": seconds}, indent=2))
    print("all targets met" if ok else "targets missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
