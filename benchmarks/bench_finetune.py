"""Benchmark 1 of the fine-tuning issue: `fit --strategy finetune` trains at >= 0.9x the images/s
of a plain PyTorch loop (same model, batch size, optimizer; images already decoded in memory,
channels_last), on this machine's CPU. Both run in this process, interleaved, best of --repeats.

    .venv/bin/python benchmarks/bench_finetune.py [--model efficientnet_lite0] [--n 160] [--repeats 2]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import digits

import headstart
from headstart.runtime import default_batch_size
from headstart.surgery import TransferModel, split
from headstart.zoo import get_card, load_network


def plain_loop(card, n: int, batch: int, classes: int, epochs: int) -> float:
    """images/s of a textbook loop: AdamW, cross-entropy, tensors in memory, channels_last."""
    torch.manual_seed(0)
    model = TransferModel(split(load_network(card), card.classifier)[0], torch.nn.Linear(card.num_features, classes))
    model.train().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, card.input_size, card.input_size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,))
    steps = (n // batch) * epochs
    t = time.perf_counter()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--n", type=int, default=160, help="training images per epoch")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    card = get_card(args.model)
    batch = default_batch_size(torch.device("cpu"))
    data = digits(args.n // 8)  # 80% of it trains, the rest validates
    work = Path(tempfile.mkdtemp(prefix="headstart-bench-ft-"))
    ours, ours_bn, ref = [], [], []
    try:
        for r in range(args.repeats):
            train_n = int(args.n * 0.8)
            ref.append(plain_loop(card, train_n, batch, 10, args.epochs))
            run = headstart.fit(data, model=args.model, out=work / f"run{r}", strategy="finetune", epochs=args.epochs,
                                augment="crop", cache_dir=work / "cache", val_split=0.2)
            ours.append(run.metrics["images_per_second"])
            # --bn train: BatchNorm statistics updated like the plain loop's (the default keeps them fixed)
            run_bn = headstart.fit(data, model=args.model, out=work / f"bn{r}", strategy="finetune", epochs=args.epochs,
                                   augment="crop", cache_dir=work / "cache", val_split=0.2, bn="train")
            ours_bn.append(run_bn.metrics["images_per_second"])
            per_epoch = [h["images_per_second"] for h in run.metrics["history"] if "images_per_second" in h]
            print(f"repeat {r}: fit finetune {ours[-1]:.1f} img/s (per epoch {per_epoch}), with --bn train "
                  f"{ours_bn[-1]:.1f} img/s, plain loop {ref[-1]:.1f} img/s", flush=True)
        ratio, ratio_bn = max(ours) / max(ref), max(ours_bn) / max(ref)
        print(f"{card.name}, batch {batch}, CPU, {torch.get_num_threads()} threads: fit finetune {max(ours):.1f} "
              f"img/s vs plain loop {max(ref):.1f} img/s -> ratio {ratio:.2f} (target >= 0.9); "
              f"with --bn train (the plain loop's BatchNorm work) {max(ours_bn):.1f} img/s -> {ratio_bn:.2f}")
        return 0 if min(ratio, ratio_bn) >= 0.9 else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
