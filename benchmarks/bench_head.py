"""Benchmark 3: training a head on 5,000 x 1,280 cached features takes < 5 s on 2 cores.

Uses the real EfficientNet-Lite0 features of the 5,000 MNIST digits that bench_memory.py
cached (extracts them first if absent). Timed in a fresh process, so the one-off cost of
torch's optimizer machinery (about a second of imports) is included, as a user sees it.
Reference in the same run: scikit-learn's LogisticRegression on the same features.

    .venv/bin/python benchmarks/bench_head.py
"""

from __future__ import annotations

import sys
import time

import numpy as np

from common import ROOT, digits

from headstart.data import read_image_data, stratified_split
from headstart.features import FeatureCache, extract
from headstart.heads import HeadSpec
from headstart.probe import HeadTraining, train_head
from headstart.runtime import pick_device
from headstart.surgery import split
from headstart.zoo import get_card, load_network


def main() -> int:
    card = get_card("efficientnet_lite0")
    samples = read_image_data(digits(500))
    feats = extract(lambda: split(load_network(card), card.classifier)[0], card.fingerprint(), card.preprocessing,
                    samples.paths, card.num_features, FeatureCache(ROOT / "cache-5000"), pick_device())
    x = np.asarray(feats.array)
    y = samples.labels
    tr, va = stratified_split(y, 0.2, 0)
    print(f"features {x.shape} ({'cache hit' if feats.cache_hit else 'extracted now'})")
    ok = True
    for kind in ("linear", "mlp"):
        t = time.perf_counter()
        r = train_head(HeadSpec(kind), x[tr], y[tr], x[va], y[va], 10, HeadTraining())
        dt = time.perf_counter() - t
        if kind == "linear":  # the default head holds the target; the 512-wide mlp is shown for reference
            ok &= dt < 5
        print(f"{kind:<6} head: {dt:.2f}s for {r.epochs_run} epochs (best {r.best_epoch}), "
              f"val accuracy {r.val_accuracy:.3f}" + (" (target < 5 s)" if kind == "linear" else ""))
    t = time.perf_counter()
    r = train_head(HeadSpec(), x[tr], y[tr], None, None, 10, HeadTraining())
    dt_full = time.perf_counter() - t
    ok &= dt_full < 5
    print(f"linear head, all 200 epochs (no early stopping): {dt_full:.2f}s (target < 5 s)")
    from sklearn.linear_model import LogisticRegression

    t = time.perf_counter()
    s = x[tr].std()
    clf = LogisticRegression(max_iter=1000).fit(x[tr] / s, y[tr])
    dt_sk = time.perf_counter() - t
    print(f"reference: scikit-learn LogisticRegression {dt_sk:.2f}s, val accuracy "
          f"{(clf.predict(x[va] / s) == y[va]).mean():.3f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
