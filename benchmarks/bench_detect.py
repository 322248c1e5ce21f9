"""Detection (issue 7): a candy detector from an ImageNet body, on CPU.

1. Accuracy per strategy: synthetic candy (headstart.detection.synthetic), 60 training scenes,
   40 held-out scenes (other seed); `fit --task detect` from mobilenet_v2's ImageNet body with
   each strategy; COCO mAP@.5 and mAP@[.5:.95] on the held-out scenes (pycocotools via
   torchmetrics), fit time. Target: a fine-tuned model within 15 minutes reaches mAP@.5 >= 0.7.
2. Training-step throughput: headstart's detection loop (the engine with DetectionTask: its data
   loading, its step, gradient clipping, scheduler) against torchvision's reference training loop
   (references/detection/engine.py: `loss_dict = model(images, targets)`, sum, backward, step)
   on the same model, the same batches (same images, order and flips) and the same optimizer,
   epochs interleaved, images read from disk in both. Target >= 0.9x. Also for a strategy with a
   frozen prefix (the frozen body units' outputs cached): what caching buys.

    .venv/bin/python benchmarks/bench_detect.py [--strategies finetune,linear-probe,partial:2,lp-ft]
                                                [--detector faster|mask|yolo] [--skip-accuracy] [--skip-throughput]
(--detector yolo: the throughput part compares YOLO's engine loop with the same plain loop, `model(images,
targets)` of the YoloDetector, with AdamW as YOLO trains.)
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common import ROOT

from headstart.detection.data import read_detection_data
from headstart.detection.run import evaluate_detector
from headstart.detection.synthetic import write_candy
from headstart.detection.inputs import flip, load_image, target_of
from headstart.detection.train import DetectionTask, detect_config, fit_detector
from headstart.engine import Engine, make_accelerator

MODEL = "mobilenet_v2"


def data() -> tuple[Path, Path]:
    root = ROOT / "candy-60-40"
    train, test = root / "train", root / "test"
    if not train.is_dir():
        write_candy(train, 60, seed=1)
    if not test.is_dir():
        write_candy(test, 40, seed=2)
    return train, test


def accuracy(strategies: list[str], epochs: int | None, detector: str = "faster") -> list[dict]:
    train, test = data()
    rows = []
    for strategy in strategies:
        kw: dict = {}
        if strategy == "lp-ft":  # a head phase, then everything: the same total epochs as the others
            kw = {"head_epochs": 10, "epochs": (epochs or 30) - 10}
        t0 = time.perf_counter()
        run = fit_detector(train, MODEL, ROOT / "runs" / f"detect-{detector}-{strategy.replace(':', '')}",
                           strategy=strategy, detector=detector, val_split=0.0, overwrite=True,
                           epochs=kw.pop("epochs", epochs), **kw)
        fit_s = time.perf_counter() - t0
        ev = evaluate_detector(run, test)
        row = {"strategy": strategy, "detector": detector, "map_50": ev["map_50"], "map": ev["map"],
               "map_75": ev["map_75"], "mask_map_50": ev.get("mask_map_50"), "mask_map": ev.get("mask_map"),
               "per_class_ap_50": ev["per_class_ap_50"], "fit_seconds": round(fit_s, 1),
               "epochs": run.metrics["epochs_run"], "images_per_second": run.metrics["train_images_per_second"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def throughput(rounds: int = 3, strategy_frozen: str = "partial:2", detector: str = "faster") -> dict:
    from torchvision.models.detection import FasterRCNN  # noqa: F401  (the reference model class)

    train, _ = data()
    samples = read_detection_data(train, log=lambda m: None)
    run = fit_detector(train, MODEL, ROOT / "runs" / f"detect-throughput-init-{detector}", strategy="finetune",
                       epochs=1, detector=detector, val_split=0.0, overwrite=True)  # a built, pretrained-body detector
    base = run.model
    idx = np.arange(len(samples))
    cfg = detect_config(detector, strategy="finetune", epochs=100, batch_size=4, lr=0.005 if detector == "faster"
                        else 0.002, val_split=0.0)

    def ours(strategy: str):
        """An engine on a copy of the detector, its last phase started: (engine, its phase's data and wrapped
        model, optimizer, scheduler)."""
        c = detect_config(detector, **{**cfg.to_dict(), "strategy": strategy})
        task = DetectionTask(samples, idx, idx[:0], copy.deepcopy(base), run.spec, c)
        engine = Engine(ROOT / "runs" / "unused", task, c, make_accelerator(c, ROOT / "runs" / "unused", None, cpu=True),
                        checkpoints=False, verbose=False)
        index = len(engine.phases) - 1
        return (engine, index, *engine.start_phase(index, engine.phases[index]))

    def reference_epoch(model, opt, keys) -> float:
        """torchvision's references/detection/engine.py train_one_epoch, without its logging."""
        t0 = time.perf_counter()
        for k in range(0, len(keys), cfg.batch_size):
            images, targets = [], []
            for i, f in keys[k: k + cfg.batch_size]:
                img, tgt = load_image(samples.images[i].path), target_of(samples.images[i], False)
                if f:
                    img, tgt = flip(img, tgt)
                images.append(img)
                targets.append(tgt)
            loss_dict = model(images, targets)
            losses = sum(loss for loss in loss_dict.values())
            opt.zero_grad()
            losses.backward()
            opt.step()
        return len(keys) / (time.perf_counter() - t0)

    def our_epoch(setup) -> tuple[float, list]:
        engine, index, data, wrapped, opt, sched = setup
        ge = engine.state.global_epoch
        rng = np.random.default_rng([cfg.seed, ge])  # the keys DetectionTask.batches will use
        order = rng.permutation(engine.task.train_idx)
        flips = rng.random(len(order)) < 0.5
        keys = [(int(i), bool(f)) for i, f in zip(order, flips)]
        t0 = time.perf_counter()
        engine.train_epoch(wrapped, opt, sched, engine.task.batches(data, ge), engine.phases[index], 0,
                           data.steps_per_epoch)
        rate = len(keys) / (time.perf_counter() - t0)
        engine.state.global_epoch += 1
        return rate, keys

    trainer = ours("finetune")
    ref = copy.deepcopy(base)
    ref.train()
    for m in ref.modules():  # frozen BatchNorm statistics, as torchvision's pretrained backbones (FrozenBatchNorm2d)
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    params = [p for p in ref.parameters() if p.requires_grad]
    ref_opt = (torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay) if cfg.optimizer == "adamw" else
               torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=1e-4))
    frozen = ours(strategy_frozen)
    our_rates, ref_rates, frozen_rates = [], [], []
    for r in range(rounds + 1):  # round 0 warms up (and fills the frozen prefix cache)
        rate, keys = our_epoch(trainer)
        ref_rate = reference_epoch(ref, ref_opt, keys)
        frozen_rate, _ = our_epoch(frozen)
        if r:
            our_rates.append(rate)
            ref_rates.append(ref_rate)
            frozen_rates.append(frozen_rate)
        print(f"  round {r}: headstart {rate:.2f} img/s, torchvision reference {ref_rate:.2f} img/s, "
              f"headstart {strategy_frozen} (cached prefix) {frozen_rate:.2f} img/s", flush=True)
    out = {"headstart_images_per_second": round(float(np.median(our_rates)), 2),
           "reference_images_per_second": round(float(np.median(ref_rates)), 2),
           f"headstart_{strategy_frozen}_images_per_second": round(float(np.median(frozen_rates)), 2)}
    out["ratio"] = round(out["headstart_images_per_second"] / out["reference_images_per_second"], 3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--strategies", default="finetune,linear-probe,partial:2,lp-ft")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--detector", default="faster", choices=["faster", "mask", "yolo"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    ok = True
    if not a.skip_throughput:
        t = throughput(a.rounds, detector="yolo" if a.detector == "yolo" else "faster")
        print(json.dumps(t))
        print(f"throughput ({a.detector}): headstart {t['headstart_images_per_second']} vs plain reference loop "
              f"{t['reference_images_per_second']} images/s = {t['ratio']}x (target >= 0.9x)")
        ok &= t["ratio"] >= 0.9
    if not a.skip_accuracy:
        rows = accuracy(a.strategies.split(","), a.epochs, a.detector)
        print(f"{'strategy':<14} {'mAP@.5':>7} {'mAP':>6} {'fit s':>6}")
        for r in rows:
            print(f"{r['strategy']:<14} {r['map_50']:>7.3f} {r['map']:>6.3f} {r['fit_seconds']:>6.0f}")
        best = [r for r in rows if r["strategy"] == "finetune"]
        if best:
            hit = best[0]["map_50"] >= 0.7 and best[0]["fit_seconds"] <= 900
            print(f"target: finetune mAP@.5 {best[0]['map_50']:.3f} in {best[0]['fit_seconds']:.0f} s "
                  f"(>= 0.7 within 900 s): {'met' if hit else 'MISSED'}")
            ok &= hit
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
