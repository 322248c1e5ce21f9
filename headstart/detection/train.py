"""Training a detector, read top to bottom.

    read and check DATA (COCO JSON or Pascal VOC), split its images into train / validation
    build the detector: an ImageNet card's body + new FPN/RPN/box (mask) heads, or a torchvision
        detector checkpoint with new predictors for the new classes (detection.model)
    train it on the engine (headstart.engine: the same strategies, phases, freezing, BatchNorm
        policy, precision, accumulation, L2-SP, patience, trackers, checkpoints and resume as
        classification), as the task DetectionTask: "head" means everything but the backbone body
        (FPN, RPN, box and mask heads); a frozen prefix of the body runs once per (image, flip) and
        its output is kept in memory, so later epochs start from it; SGD with momentum and a
        clipped gradient; COCO mAP on the validation images every few epochs (torchmetrics)
    write the run (model.safetensors + headstart.json + metrics.json)

The step itself is torchvision's GeneralizedRCNN.forward taken apart (transform, backbone,
RPN, ROI heads) only so that the backbone can start from a cached prefix; with nothing
cached it computes exactly what `model(images, targets)` computes.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .. import __version__
from ..console import log
from ..engine import Engine, PhaseData, Task, TrainConfig, Validation, epoch_seed, make_accelerator
from ..engine.accelerator import check_tracker, open_run
from ..errors import HeadstartError
from ..rundir import RUN_FILE, RUN_FORMAT, check_out_dir
from ..runtime import pick_device
from ..options import FitOptions
from ..strategies import Phase, Strategy
from .data import DetectionData, read_detection_data, split_images
from .inputs import PrefixCache, Samples, collate_items, pyramid_for
from .model import DetectorSpec, StagedBackbone, build_detector, detector_from_checkpoint, detector_name, origin
from .yolo import FPN_CHANNELS as YOLO_FPN_CHANNELS, YoloDetector, anchors_from_lists, kmeans_anchors, \
    scaled_default_anchors



# Detection's own defaults of the engine's options (headstart.engine.TrainConfig); also what a run written
# by headstart 0.2 did not save.
DETECT_DEFAULTS: dict[str, Any] = dict(
    head={}, epochs=24, head_epochs=24, unfreeze_every=1, lr=0.01, body_lr_mult=1.0, layer_decay=1.0,
    weight_decay=1e-4, batch_size=4, warmup=0.1, bn="frozen", augment="flip", eval_every=4, optimizer="sgd",
    momentum=0.9, clip_grad=10.0, patience=None, class_balance=True)
# YOLO's own, over DETECT_DEFAULTS (--detector yolo). Measured on candy scenes of seeds the benchmark does not use
# (60 training of seed 5, 40 held-out of seed 6; mobilenet_v2, 256 px, batch 4, finetune, 24 epochs; held-out mAP@.5
# / mAP): AdamW at lr 2e-3 0.962 / 0.591, at 1e-3 0.950 / 0.587; with the loss weights first tried, SGD (momentum
# 0.9) at lr 0.04 trailed AdamW at 1e-3 at every validation (mAP@.5 0.30 against 0.42 after 12 epochs), and was stopped.
YOLO_DEFAULTS: dict[str, Any] = DETECT_DEFAULTS | dict(optimizer="adamw", lr=0.002)
AUGMENTATIONS = ("flip", "none")


def detect_defaults(kind: str) -> dict[str, Any]:
    """The training defaults of a detector of `kind` ("faster", "mask", "yolo"; "auto" as the R-CNNs)."""
    return YOLO_DEFAULTS if kind == "yolo" else DETECT_DEFAULTS


def detect_config(kind: str = "faster", **options: Any) -> TrainConfig:
    """The engine's configuration for detection: `options` over the defaults of a detector of `kind`, checked."""
    cfg = TrainConfig(**(detect_defaults(kind) | {"strategy": "finetune"} | options))
    if cfg.augment not in AUGMENTATIONS:
        raise HeadstartError(f"--augment {cfg.augment} does not apply to detection (random crops would cut boxes); "
                             f"use one of {', '.join(AUGMENTATIONS)}")
    return cfg


# ------------------------------------------------------------------------------------------ the task
class DetectionTask(Task):
    """A detector on the engine: batches of (flipped) images, the sum of the detector's losses, COCO mAP on
    the validation images. "Head" means everything but the backbone body: FPN, RPN, box and mask heads."""

    body_prefix = "backbone."
    epoch_seed_base = 100_003  # the samplers of RPN and ROI heads follow (seed, epoch): resumable

    def __init__(self, data: DetectionData, train_idx: np.ndarray, val_idx: np.ndarray, model: nn.Module,
                 spec: DetectorSpec, cfg: TrainConfig, num_workers: int = 0) -> None:
        self.data, self.train_idx, self.val_idx, self.cfg = data, train_idx, val_idx, cfg
        self.model, self.spec, self.num_workers = model, spec, num_workers
        self.backbone: StagedBackbone = model.backbone
        self.groups = self.backbone.group_params()
        self.n_val = len(val_idx)
        self.samples = Samples(data, model, spec.kind == "mask")
        self.cache: PrefixCache | None = None
        self.device = torch.device("cpu")
        self.epoch, self.rank, self.processes = 0, 0, 1
        self.step = _Step(self)

    def start_phase(self, index: int, phase: Phase, of: int, acc) -> PhaseData:
        """The body's frozen first units run once per (image, flip): their outputs are kept for later epochs."""
        G, t = len(self.groups), phase.trainable
        stop = 0 if t >= G else self.backbone.groups[G - t][0] if t else len(self.backbone.units)
        if self.cache is None or self.cache.stop != stop:
            self.cache = PrefixCache(stop) if stop else None
        self.device, self.rank, self.processes = acc.device, acc.process_index, acc.num_processes
        self.model.to(acc.device)
        n_train = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        log(f"phase {index + 1}/{of} '{phase.name}': {t} of {G} backbone groups train ({n_train / 1e6:.1f}M "
            "parameters)" + (f"; the first {stop} body units are frozen: computed once per image and flip, then "
                             "reused" if stop else ""))
        return PhaseData(None, steps_per_epoch=math.ceil(len(self.train_idx) / self.cfg.batch_size),
                         info={"frozen_units_cached": stop})

    def batches(self, data: PhaseData, global_epoch: int):
        """The epoch's shuffled (image, flip) keys in batches of --batch-size; under N processes each takes
        every N-th key of each batch (a last batch too small to share is left out)."""
        cfg, n = self.cfg, self.processes
        self.epoch = global_epoch
        rng = np.random.default_rng([cfg.seed, global_epoch])
        order = rng.permutation(self.train_idx)
        flips = rng.random(len(order)) < 0.5 if cfg.augment == "flip" else np.zeros(len(order), dtype=bool)
        keys = [(int(i), bool(f)) for i, f in zip(order, flips)]
        batches = [keys[b:b + cfg.batch_size] for b in range(0, len(keys), cfg.batch_size)]
        mine = [batch[self.rank::n] for batch in batches if len(batch) >= n]
        return torch.utils.data.DataLoader(_Keyed(self.samples, mine), batch_size=None, collate_fn=collate_items,
                                           num_workers=self.num_workers)

    def trained_module(self) -> nn.Module:
        return self.step

    def loss(self, model: nn.Module, batch: list[tuple[int, bool, Tensor, dict[str, Tensor]]]) -> tuple[Tensor, int]:
        return model(batch), len(batch)

    def validate(self, model: nn.Module, data: PhaseData) -> Validation:
        from .evaluate import coco_metrics, detect

        m = coco_metrics(detect(self.model, self.data, self.val_idx, self.device), self.data, self.val_idx,
                         masks=False)
        return Validation({"val_map": m["map"], "val_map_50": m["map_50"]}, (m["map"], m["map_50"]))

    def describe(self, record: dict[str, Any]) -> str:
        if "val_map" not in record:
            return ""
        return f", val mAP {record['val_map']:.3f}, mAP@.5 {record['val_map_50']:.3f}"


class _Step(nn.Module):
    """One batch through the detector in training mode, as a module (DDP averages gradients through its
    forward): the sum of the detector's losses. torchvision's GeneralizedRCNN.forward taken apart only so
    that the body can start from a cached prefix; with nothing cached it computes what `model(images,
    targets)` computes."""

    def __init__(self, task: DetectionTask) -> None:
        super().__init__()
        self.detector = task.model
        self.task = [task]  # not a module attribute: kept out of the module tree

    def forward(self, batch: list[tuple[int, bool, Tensor, dict[str, Tensor]]]) -> Tensor:
        from torchvision.models.detection.image_list import ImageList

        task, model = self.task[0], self.detector
        dev = task.device
        if isinstance(model, YoloDetector):  # no sampling: every anchor and cell of every image counts
            targets = [{k: v.to(dev) for k, v in t.items()} for *_, t in batch]
            _, features = pyramid_for(model.backbone, [(i, f, img) for i, f, img, _ in batch], task.cache, dev)
            losses = model.losses(features, [tuple(img.shape[-2:]) for *_, img, _ in batch], targets)
            return sum(losses.values())  # type: ignore[return-value]
        first = epoch_seed(task.cfg.seed, task.epoch, DetectionTask.epoch_seed_base) * 2 * len(task.data)
        seeds = [(first + 2 * i + f) % (1 << 63) for i, f, *_ in batch]
        targets = [{k: v.to(dev) for k, v in t.items()} for *_, t in batch]
        images, features = pyramid_for(model.backbone, [(i, f, img) for i, f, img, _ in batch], task.cache, dev)
        image_list = ImageList(images, [tuple(img.shape[-2:]) for *_, img, _ in batch])
        with KeyedSampler.within(model.rpn, seeds):
            proposals, rpn_losses = model.rpn(image_list, features, targets)
        with KeyedSampler.within(model.roi_heads, seeds):
            _, head_losses = model.roi_heads(features, proposals, image_list.image_sizes, targets)
        return sum(rpn_losses.values()) + sum(head_losses.values())  # type: ignore[return-value]


class KeyedSampler:
    """torchvision's sampler of positive and negative anchors (proposals), drawing each image's sample from
    a generator seeded by (seed, epoch, image, flip): the same draws whichever batch, or process, the image
    lands in, so N processes train what one does."""

    def __init__(self, inner, seeds: list[int]) -> None:
        self.inner, self.seeds = inner, seeds

    @classmethod
    @contextmanager
    def within(cls, holder: nn.Module, seeds: list[int]):
        """`holder` (the RPN, the ROI heads) samples with the images' seeds inside the block."""
        inner = holder.fg_bg_sampler
        holder.fg_bg_sampler = cls(inner, seeds)
        try:
            yield
        finally:
            holder.fg_bg_sampler = inner

    def __call__(self, matched: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        positives, negatives = [], []
        for m, seed in zip(matched, self.seeds, strict=True):
            with torch.random.fork_rng(devices=[m.device] if m.is_cuda else []):
                torch.manual_seed(seed)
                (p,), (n,) = self.inner([m])
            positives.append(p)
            negatives.append(n)
        return positives, negatives


class _Keyed(torch.utils.data.Dataset):
    """Batches of (image, flip) keys -> batches of samples."""

    def __init__(self, samples: Samples, batches: list[list[tuple[int, bool]]]) -> None:
        self.samples, self.batches = samples, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int):
        return [self.samples[key] for key in self.batches[k]]


# ------------------------------------------------------------------------------------------ fit
def input_sizes(data: DetectionData, min_size: int | None, max_size: int | None) -> tuple[int, int]:
    """The detector's resize: the shorter side to `min_size` (default: DATA's median shorter side,
    kept within 256..800 and rounded to a multiple of 32), the longer side at most `max_size`."""
    if min_size is None:
        median = float(np.median([min(im.width, im.height) for im in data.images]))
        min_size = int(min(800, max(256, round(median / 32) * 32)))
    if min_size < 64:  # the pyramid's coarsest level is 1/32 of the image
        raise HeadstartError(f"--input-size for detection must be >= 64 pixels; got {min_size}")
    max_size = max_size or int(round(min_size * 5 / 3))
    if max_size < min_size:
        raise HeadstartError(f"--max-size ({max_size}) must be >= --input-size ({min_size})")
    return min_size, max_size


def resolve_model(model: str | None, allow_download: bool = False):
    """A zoo card, or a torchvision detector checkpoint file (`file:PATH` or a path to a .pth, .pt or
    .safetensors file). Returns (card or None, checkpoint path or None)."""
    from ..zoo import get_card

    name = model or DEFAULT_DETECT_MODEL
    path = Path(name[5:] if name.startswith("file:") else name).expanduser()
    if path.is_file() and path.suffix.lower() in (".pth", ".pt", ".safetensors", ".bin"):
        return None, path
    card = get_card(name, allow_download=allow_download)
    if card.modality != "image":
        raise HeadstartError(f"model '{card.name}' is a {card.modality} model; detection needs an image model "
                             f"(e.g. {DEFAULT_DETECT_MODEL}) or a torchvision detector checkpoint file")
    return card, None


DEFAULT_DETECT_MODEL = "mobilenet_v2"
DETECTORS = ("auto", "faster", "mask", "yolo")


def default_epochs(kind: str, batch_size: int, n_train: int) -> int:
    """Epochs when --epochs is not given: about 450 optimizer steps in all for an R-CNN (candy, 60 scenes: 30 epochs,
    ~10 min on 2 cores), 300 for YOLO (20 epochs; its held-out mAP@.5 on candy of seeds 5 / 6 with partial:3: 0.962
    after 16 of 20 epochs, 0.948 after 20, 0.866 after 12); 12..60 epochs."""
    steps = 300 if kind == "yolo" else 450
    return int(min(60, max(12, round(steps * batch_size / max(1, n_train)))))


def yolo_anchors(samples: DetectionData, train_idx: np.ndarray, min_size: int, max_size: int):
    """YOLO's anchors: k-means on the training boxes' sizes as the detector sees them (resized), or the
    scaled COCO defaults where there are too few boxes (headstart.detection.yolo.kmeans_anchors); and which."""
    wh = []
    for i in train_idx:
        im = samples.images[int(i)]
        scale = min(min_size / min(im.width, im.height), max_size / max(im.width, im.height))
        b = np.asarray(im.boxes, dtype=np.float64).reshape(-1, 4)
        wh.append((b[:, 2:] - b[:, :2]) * scale)
    boxes = np.concatenate(wh) if wh else np.zeros((0, 2))
    anchors = kmeans_anchors(boxes, min_size)
    how = (f"YOLOv3's COCO anchors scaled to {min_size} px (only {len(boxes)} training boxes)"
           if anchors == scaled_default_anchors(min_size) else f"k-means on the {len(boxes)} training boxes")
    return anchors, how


def fit_detector(data: str | Path, model: str | None = None, out: str | Path = "runs/detect", *,
                 options: FitOptions | None = None, **given: Any):
    """Transfer a detector to the boxes (and masks) in `data` (COCO JSON or Pascal VOC) and write the
    run to `out`. `model` is a zoo card (its ImageNet body gets new detection heads; default
    mobilenet_v2) or a torchvision detector checkpoint (only its predictors are replaced). Mask R-CNN
    when DATA has masks (`detector` "faster" to ignore them); `detector` "yolo": a one-stage YOLO on a
    zoo card's body (headstart.detection.yolo). Options: headstart.options, as FitOptions or by name;
    those of train=, detect= and setup= apply (DETECT_DEFAULTS, YOLO_DEFAULTS for YOLO, where None)."""
    from ..strategies import Strategy as _S

    o = options or FitOptions.of(given, "fit_detector()")
    t, d, s = o.train, o.detect, o.setup
    t_start = time.perf_counter()
    strategy, detector, seed, val_split = t.strategy, d.detector, t.seed, t.val_split_for(t.strategy)
    if strategy.strip().lower() != "auto":
        _S.parse(strategy)  # a typo fails before any work
    if detector not in DETECTORS:
        raise HeadstartError(f"--detector must be one of {', '.join(DETECTORS)}; got '{detector}'")
    defaults = detect_defaults(detector)
    trained = dict(unfreeze_every=t.unfreeze_every, lr=t.lr, body_lr_mult=t.body_lr_mult, layer_decay=t.layer_decay,
                   weight_decay=t.weight_decay, batch_size=t.batch_size, clip_grad=t.clip_grad, augment=t.augment,
                   eval_every=d.eval_every, patience=t.patience)
    options_ = {k: defaults[k] if v is None else v for k, v in trained.items()} | dict(
        lr=t.lr or defaults["lr"], warmup=t.warmup, bn=t.bn, seed=seed, val_split=val_split, precision=t.precision, l2sp=t.l2sp,
        accumulate=t.accumulate)
    epochs, head_epochs = t.epochs, d.head_epochs
    detect_config(detector, **options_, **({"epochs": epochs} if epochs else {}),
                  **({"head_epochs": head_epochs} if head_epochs else {}))  # every range, before any work
    check_processes(options_["batch_size"])
    check_tracker(s.tracker)
    out_dir = check_out_dir(out, s.overwrite)
    darknet = model is not None and model.startswith("darknet:")
    if darknet:
        from .darknet_yolo import parse_darknet_model, start_from_darknet

        if detector not in ("auto", "yolo"):
            raise HeadstartError(f"--model {model} is a YOLO network; --detector {detector} does not apply to it: leave "
                                 "--detector out (or say yolo)")
        parse_darknet_model(model)  # the files exist, before any work
        card, checkpoint = None, None
    else:
        card, checkpoint = resolve_model(model, s.allow_download)
    if detector == "yolo" and card is None and not darknet:
        raise HeadstartError(f"--detector yolo trains on a zoo card's ImageNet body (e.g. --model {DEFAULT_DETECT_MODEL}); "
                             f"a torchvision detector checkpoint ('{checkpoint}') trains Faster or Mask R-CNN")
    samples = read_detection_data(data, skip_bad=s.skip_bad_files, log=log)
    if detector == "mask" and not samples.has_masks:
        raise HeadstartError(f"--detector mask needs masks, and DATA '{data}' has none (COCO 'segmentation'); "
                             "use --detector faster")
    kind = "yolo" if detector == "yolo" or darknet else "mask" if samples.has_masks and detector != "faster" else "faster"
    min_size, max_size = input_sizes(samples, d.input_size, d.max_size)
    train_idx, val_idx = split_images(samples, val_split, seed)
    anchors, anchors_how = (yolo_anchors(samples, train_idx, min_size, max_size) if kind == "yolo" and not darknet
                            else (None, ""))
    dev = pick_device(s.device)
    if darknet:
        assert model is not None
        torch.manual_seed(seed)
        net, cfg_text, start = start_from_darknet(model, samples.classes, min_size, max_size)
        spec = DetectorSpec(base="darknet", arch=Path(start["darknet_cfg"]).name, kind="yolo", classes=samples.classes,
                            min_size=min_size, max_size=max_size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                            anchors=anchors_from_lists(net.anchors.tolist()), darknet_cfg=cfg_text)
        anchors_how = "the .cfg's own"
        if not start["weights"] and options_["bn"] == "frozen":
            options_["bn"] = "train"
            log("a network from random weights has no BatchNorm statistics to keep: they learn from the batches "
                "(--bn train)")
        if start["reused_classes"]:
            log(f"reused the network's rows for {', '.join(start['reused_classes'])} (same class names)")
    elif card is not None:
        from ..zoo import locate

        locate(card, allow_download=s.allow_download)
        pre = card.preprocessing
        spec = DetectorSpec(base="card", arch=card.architecture, kind=kind, classes=samples.classes,
                            min_size=min_size, max_size=max_size, mean=tuple(pre.mean), std=tuple(pre.std),
                            anchors=anchors, **({"fpn_channels": YOLO_FPN_CHANNELS} if kind == "yolo" else {}))
        torch.manual_seed(seed)
        net = build_detector(spec, card)
        start = {"card": card.name}
    else:
        assert checkpoint is not None
        spec = DetectorSpec(base="torchvision", arch=s.arch or "", kind=kind, classes=samples.classes,
                            min_size=min_size, max_size=max_size)
        torch.manual_seed(seed)
        net, spec, start = detector_from_checkpoint(checkpoint, spec, s.arch, None, log=log)
        if start["reused_classes"]:
            log(f"reused the checkpoint's rows for {', '.join(start['reused_classes'])} (same class names)")
    chosen, reason = _detect_strategy(strategy, len(train_idx), card is None, kind,
                                      scratch=darknet and not start["weights"])
    _S.parse(chosen).check(len(net.backbone.groups), card.name if card else spec.arch)
    if epochs is None:
        epochs = default_epochs(kind, options_["batch_size"], len(train_idx))
    cfg = detect_config(kind, strategy=chosen, epochs=epochs, head_epochs=head_epochs or epochs, **options_)
    log(f"detector: {detector_name(kind)} from {origin(start)}, "
        f"{len(samples.classes)} classes, images resized to {min_size} px (longer side <= {max_size}); "
        f"{len(train_idx)} training and {len(val_idx)} validation images; strategy {chosen} ({reason})"
        + (f"; anchors: {anchors_how}" if anchors_how else ""))
    record = {"format": RUN_FORMAT, "status": "training", "headstart": __version__, "task": "detect",
              "spec": spec.to_dict(), "card": card.to_dict() if card else None, "start": start,
              "classes": list(samples.classes), "strategy": chosen, "strategy_reason": reason,
              "config": cfg.to_dict(), "data": _data_record(samples, s.skip_bad_files),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    return _train(out_dir, samples, train_idx, val_idx, net, spec, cfg, dev, record, s.num_workers or 0, t_start,
                  tracker=s.tracker)


def check_processes(batch_size: int) -> None:
    """Under N processes each takes an equal share of every batch."""
    n = int(os.environ.get("WORLD_SIZE", "1"))
    if batch_size % n:
        raise HeadstartError(f"--batch-size {batch_size} cannot be shared by {n} processes: give a multiple of "
                             f"--processes {n} (each process takes an equal share of every batch)")


def _detect_strategy(strategy: str, n_train: int, from_detector: bool, kind: str = "faster",
                     scratch: bool = False) -> tuple[str, str]:
    """`auto` for detection. From an ImageNet body, measured on the synthetic candy scenes (60 training,
    40 held-out, mobilenet_v2, 30 epochs, benchmarks/bench_detect.py): held-out mAP@.5 / mAP finetune
    0.983 / 0.750, partial:2 0.976 / 0.739, lp-ft 0.970 / 0.731, linear-probe 0.931 / 0.574. From a
    detector checkpoint: torchvision's own default (3 of 5 backbone groups train), not measured here
    (no COCO weights offline). YOLO from an ImageNet body: partial:3, measured on candy of seeds 5 / 6 (60 training,
    40 held-out; AdamW lr 2e-3, 256 px): 0.948 / 0.604 in 20 epochs at 6.6 training images/s (1 thread), finetune
    0.962 / 0.591 in 24 at 4.6: the same within the spread between runs, a third slower."""
    if strategy.strip().lower() != "auto":
        return Strategy.parse(strategy).name, f"chosen with --strategy {strategy}"
    if scratch:
        return "finetune", "no weights were given: every layer learns from its random initialisation"
    if from_detector and kind == "yolo":
        return "partial:3", ("a Darknet detector's weights: its body and heads already fit detection, so the top three "
                             "depth groups and the heads adapt (as from a torchvision detector checkpoint)")
    if from_detector:
        return "partial:3", ("a detector checkpoint: its backbone, pyramid and proposals already fit detection, so the "
                             "top three backbone groups and the heads adapt (torchvision's own fine-tuning default)")
    if kind == "yolo":
        return "partial:3", ("an ImageNet body under a new YOLO head: the three stages at strides 8, 16 and 32 learn to "
                             "localise; the stem and the stride-4 stage keep their ImageNet weights (as accurate as "
                             "training every layer on the candy benchmark, and faster), with frozen BatchNorm statistics")
    return "finetune", ("an ImageNet body under new detection heads: the features must learn to localise, so every "
                        "layer trains, with frozen BatchNorm statistics")


def _data_record(samples: DetectionData, skip_bad: bool) -> dict[str, Any]:
    return {"source": samples.source, "format": samples.format, "fingerprint": samples.fingerprint(),
            "n": len(samples), "classes": list(samples.classes), "boxes": samples.counts(),
            "masks": samples.has_masks, "skip_bad": skip_bad}


def _train(out_dir: Path, samples: DetectionData, train_idx: np.ndarray, val_idx: np.ndarray, net: nn.Module,
           spec: DetectorSpec, cfg: TrainConfig, dev: torch.device, record: dict[str, Any], num_workers: int,
           t_start: float, resume: bool = False, tracker: str | None = None):
    from .run import DetectionRun

    acc = make_accelerator(cfg, out_dir, tracker, cpu=dev.type == "cpu")
    open_run(acc, out_dir, None if resume else record, cfg, tracker)
    engine = Engine(out_dir, DetectionTask(samples, train_idx, val_idx, net.to(acc.device), spec, cfg, num_workers),
                    cfg, acc)
    if resume:
        engine.resume()
    engine.run()
    s = engine.state
    net = engine.best_model()
    best_record = next((h for h in s.history if h["epoch"] == s.best_epoch), None)
    metrics = {"task": "detect", "model": origin(record["start"]),
               "detector": spec.kind, "strategy": cfg.strategy, "strategy_reason": record["strategy_reason"],
               "val_map": best_record.get("val_map") if best_record else None,
               "val_map_50": best_record.get("val_map_50") if best_record else None,
               "best_epoch": s.best_epoch if best_record else s.global_epoch,
               "n_train": int(len(train_idx)), "n_val": int(len(val_idx)), "n_classes": len(samples.classes),
               "boxes": samples.counts(), "epochs_run": s.global_epoch, "stopped_early": s.stopped_early,
               "phases": s.phases, "history": s.history,
               "train_images_per_second": round(s.images / s.body_seconds, 2) if s.body_seconds else None,
               "input_size": spec.min_size, "device": str(acc.device), "precision": acc.mixed_precision,
               "config": cfg.to_dict(), "start": record["start"],
               "headstart": __version__, "total_seconds": round(time.perf_counter() - t_start, 3)}
    info = dict(record, status="finished", saved=time.strftime("%Y-%m-%dT%H:%M:%S"))
    run = DetectionRun(dir=out_dir, spec=spec, model=net, info=info, metrics=metrics)
    if acc.is_main_process:
        run.save_in_place()
    engine.close()
    return run


def resume_detector(run_dir: Path, info: dict[str, Any], device: str | None = None, num_workers: int = 0,
                    tracker: str | None = None):
    """Continue a detection run that was stopped, at its last checkpoint."""
    from ..engine import Checkpoint
    from ..zoo.card import ModelCard

    t_start = time.perf_counter()
    spec = DetectorSpec.from_dict(info["spec"])
    cfg = TrainConfig.from_dict(info["config"], where=f"run '{run_dir}': {RUN_FILE}", **detect_defaults(spec.kind))
    check_processes(cfg.batch_size)
    samples = read_detection_data(info["data"]["source"], skip_bad=info["data"].get("skip_bad", False), log=log)
    if samples.fingerprint() != info["data"]["fingerprint"]:
        raise HeadstartError(f"--resume '{run_dir}': the files of {info['data']['source']} changed since the run "
                             "started; start a new run with --out")
    train_idx, val_idx = split_images(samples, cfg.val_split, cfg.seed)
    card = ModelCard.from_dict(info["card"]) if info.get("card") else None
    if Checkpoint(run_dir).exists():  # weights come from the checkpoint
        net = build_detector(spec, card, pretrained=False)
    else:  # stopped before its first checkpoint: start again from the pretrained weights, as fit did
        torch.manual_seed(cfg.seed)
        net = build_detector(spec, card) if card is not None else \
            detector_from_checkpoint(Path(info["start"]["checkpoint"]), spec, spec.arch, None, log=log)[0]
    log(f"resuming {run_dir} ({cfg.strategy})")
    return _train(run_dir, samples, train_idx, val_idx, net, spec, cfg, pick_device(device), info, num_workers,
                  t_start, resume=True, tracker=tracker)
