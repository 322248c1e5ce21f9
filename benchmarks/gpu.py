"""Benchmark 4 of the fine-tuning issue, for a CUDA GPU: `fit --strategy finetune` on
EfficientNet-Lite0 reaches >= 0.8x the images/s of a plain bf16 channels_last training loop on
the same card, measured in the same command. (For scale: a plain eager loop trained
EfficientNet-Lite0 at about 5,400 images/s, batch 256, bf16, on one H100.)

The data are the 5,000 MNIST digits as PNG files, read once so they sit in the page cache;
fit decodes them in DataLoader workers as it would a user's data. One short command:

    .venv/bin/python benchmarks/gpu.py                # on a GPU machine
    .venv/bin/python benchmarks/gpu.py --quick        # a dry run of the same script on a CPU
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import digits

import headstart
from headstart.surgery import TransferModel, split
from headstart.zoo import get_card, load_network


def plain_loop(card, batch: int, steps: int, device: torch.device, bf16: bool) -> float:
    torch.manual_seed(0)
    model = TransferModel(split(load_network(card), card.classifier)[0], torch.nn.Linear(card.num_features, 10))
    model.train().to(device, memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, card.input_size, card.input_size, device=device).contiguous(
        memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):  # warm-up: kernels chosen, memory pools filled
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sizes, to check the script on a CPU")
    ap.add_argument("--out", default=None, help="also write the figures as JSON here")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    if not cuda and not args.quick:
        print("no CUDA GPU here: run with --quick for a dry run on the CPU")
        return 2
    device = torch.device("cuda" if cuda else "cpu")
    card = get_card("efficientnet_lite0")
    batch, epochs, per_class = (256, 3, 500) if not args.quick else (16, 1, 8)
    data = digits(per_class)
    for p in data.rglob("*.png"):  # into the page cache
        p.read_bytes()
    work = Path(tempfile.mkdtemp(prefix="headstart-gpu-"))
    try:
        n_train = int(per_class * 10 * 0.8)
        steps = max(5, (n_train // batch))
        ref = plain_loop(card, batch, steps, device, bf16=cuda)
        run = headstart.fit(data, out=work / "run", strategy="finetune", epochs=epochs, batch_size=batch,
                            augment="crop", cache_dir=work / "cache")
        per_epoch = [h["images_per_second"] for h in run.metrics["history"] if "images_per_second" in h]
        ours = max(per_epoch)  # the steady state; the first epoch also starts the workers
        name = torch.cuda.get_device_name() if cuda else "cpu"
        ratio = ours / ref
        print(f"{name}: plain {'bf16 ' if cuda else ''}channels_last loop {ref:.0f} img/s (batch {batch}); "
              f"fit --strategy finetune {ours:.0f} img/s (epochs {per_epoch}, precision "
              f"{run.metrics['precision']}) -> ratio {ratio:.2f} (target >= 0.8)")
        if args.out:
            Path(args.out).write_text(json.dumps({"device": name, "plain": ref, "fit": ours, "per_epoch": per_epoch,
                                                  "ratio": ratio, "batch": batch}, indent=2))
        return 0 if ratio >= 0.8 or args.quick else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
