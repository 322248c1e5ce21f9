"""Benchmark 1: feature extraction inside `fit` (files decoded from disk) against a plain PyTorch
loop running the same body, channels_last + inference_mode, on tensors already in memory, at
the same batch size. Target: ratio >= 0.85.

Also printed: the ratio against the plain loop on headstart's BatchNorm-folded body, which
isolates the cost of the data pipeline (decode, resize, transfer) from the folding gain.

    .venv/bin/python benchmarks/bench_extract.py [--model efficientnet_lite0] [--n 480] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from common import best_of, digits, now, photos

from headstart.data import read_image_data
from headstart.features import run_body
from headstart.fuse import fold_batchnorm
from headstart.runtime import default_batch_size, default_workers
from headstart.surgery import split
from headstart.zoo import get_card, load_network


def plain_loop(body: torch.nn.Module, n: int, batch: int, size: int) -> float:
    """images/s of the reference: the body alone on in-memory tensors."""
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        body(x)
        t = now()
        done = 0
        while done < n:
            body(x)
            done += batch
    return done / (now() - t)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--n", type=int, default=480, help="images per dataset")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    dev = torch.device("cpu")
    card = get_card(args.model)
    body = split(load_network(card), card.classifier)[0].eval().to(memory_format=torch.channels_last)
    size, batch, workers = card.preprocessing.crop, default_batch_size(dev), default_workers(dev)
    example = torch.randn(2, 3, size, size).contiguous(memory_format=torch.channels_last)
    folded = fold_batchnorm(body, example)
    print(f"{card.name}: batch {batch}, {workers} decode worker(s), {torch.get_num_threads()} torch threads")
    ok = True
    for label, folder in (("MNIST PNG 28x28", digits(args.n // 10)), ("JPEG photos 640x480", photos(args.n))):
        paths = read_image_data(folder).paths[: args.n]
        out = np.empty((len(paths), card.num_features), dtype=np.float32)
        ours = best_of(lambda: run_body(body, card.preprocessing, paths, out, dev, batch, workers), args.repeats)
        ref = best_of(lambda: plain_loop(body, len(paths), batch, size), args.repeats)
        ref_folded = best_of(lambda: plain_loop(folded, len(paths), batch, size), args.repeats)
        ratio = ours / ref
        ok &= ratio >= 0.85
        print(f"{label:<22} fit extraction {ours:6.1f} img/s | plain loop {ref:6.1f} img/s -> ratio {ratio:.2f} "
              f"(target >= 0.85) | plain loop on the folded body {ref_folded:6.1f} img/s -> {ours / ref_folded:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
