"""Training a detector, read top to bottom.

    read and check DATA (COCO JSON or Pascal VOC), split its images into train / validation
    build the detector: an ImageNet card's body + new FPN/RPN/box (mask) heads, or a torchvision
        detector checkpoint with new predictors for the new classes (detection.model)
    for each phase of the strategy (the same strategies as classification; "head" means
        everything but the backbone body: FPN, RPN, box and mask heads):
        freeze the body's groups that do not train; BatchNorm per --bn
        a frozen prefix of the body runs once per (image, flip) and its output is kept in
            memory, so later epochs start from it (frozen layers are not recomputed)
        SGD with momentum, warm-up + cosine, batches of flipped / unflipped images
        COCO mAP on the validation images every few epochs (torchmetrics); keep the best
        a checkpoint after every epoch (weights, optimizer, state): a killed run resumes
    write the run (model.safetensors + headstart.json + metrics.json)

The step itself is torchvision's GeneralizedRCNN.forward taken apart (transform, backbone,
RPN, ROI heads) only so that the backbone can start from a cached prefix; with nothing
cached it computes exactly what `model(images, targets)` computes.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .. import __version__
from ..console import log
from ..errors import HeadstartError
from ..fileio import atomic_dir, atomic_write_json
from ..run import RUN_FILE, RUN_FORMAT, check_out_dir
from ..runtime import pick_device
from ..strategies import BN_POLICIES, Phase, Strategy, plan, set_modes, warmup_cosine
from .data import DetectionData, DetectionImage, mask_of, read_detection_data, split_images
from .model import DetectorSpec, StagedBackbone, build_detector, detector_from_checkpoint

CHECKPOINT = "checkpoint"
CACHE_LIMIT_BYTES = 3 << 30  # a frozen prefix's outputs are kept in memory up to this size


@dataclass(frozen=True)
class DetectConfig:
    """What decides what a detection run computes; saved with the run, compared on --resume."""

    strategy: str = "finetune"
    epochs: int = 24
    head_epochs: int = 24
    unfreeze_every: int = 2
    lr: float = 0.02
    body_lr_mult: float = 1.0
    layer_decay: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 4
    warmup: float = 0.1
    clip_grad: float = 10.0
    bn: str = "frozen"
    augment: str = "flip"
    eval_every: int = 4
    seed: int = 0
    val_split: float = 0.2
    precision: str = "auto"

    def __post_init__(self) -> None:
        for name, ok, rule in (("epochs", self.epochs >= 1, ">= 1"), ("lr", self.lr > 0, "> 0"),
                               ("batch-size", self.batch_size >= 1, ">= 1"), ("warmup", 0 <= self.warmup < 1, "in [0, 1)"),
                               ("body-lr-mult", self.body_lr_mult > 0, "> 0"), ("eval-every", self.eval_every >= 1, ">= 1"),
                               ("layer-decay", 0 < self.layer_decay <= 1, "in (0, 1]")):
            if not ok:
                raise HeadstartError(f"--{name} must be {rule}; got {getattr(self, name.replace('-', '_'))}")
        for name, value, allowed in (("bn", self.bn, BN_POLICIES), ("augment", self.augment, ("flip", "none")),
                                     ("precision", self.precision, ("auto", "fp32", "fp16", "bf16"))):
            if value not in allowed:
                raise HeadstartError(f"--{name} must be one of {', '.join(allowed)} for detection; got '{value}'")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DetectConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# ------------------------------------------------------------------------------------------ inputs
def load_image(path: Path) -> Tensor:
    """An image file as float RGB (3, H, W) in [0, 1]."""
    from torchvision.transforms.functional import pil_to_tensor

    from ..data.transforms import open_rgb

    return pil_to_tensor(open_rgb(path)).float().div_(255)


def target_of(image: DetectionImage, with_masks: bool) -> dict[str, Tensor]:
    t = {"boxes": torch.as_tensor(image.boxes, dtype=torch.float32).reshape(-1, 4),
         "labels": torch.as_tensor(image.labels, dtype=torch.int64) + 1}  # 0 is the background
    if with_masks:
        t["masks"] = torch.from_numpy(np.stack([mask_of(image, i) for i in range(len(image.boxes))])) \
            if len(image.boxes) else torch.zeros((0, image.height, image.width), dtype=torch.uint8)
    return t


def flip(img: Tensor, target: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    w = img.shape[-1]
    t = dict(target)
    b = t["boxes"].clone()
    b[:, [0, 2]] = w - t["boxes"][:, [2, 0]]
    t["boxes"] = b
    if "masks" in t:
        t["masks"] = t["masks"].flip(-1)
    return img.flip(-1), t


class Samples(torch.utils.data.Dataset):
    """(image index, flipped) -> the image resized and normalized as the detector's transform does,
    and its target resized with it."""

    def __init__(self, data: DetectionData, model: nn.Module, with_masks: bool) -> None:
        self.data, self.transform, self.with_masks = data, model.transform, with_masks

    def __len__(self) -> int:
        return len(self.data.images)

    def __getitem__(self, key: tuple[int, bool]) -> tuple[int, bool, Tensor, dict[str, Tensor]]:
        i, flipped = key
        image = self.data.images[i]
        img, target = load_image(image.path), target_of(image, self.with_masks)
        if flipped:
            img, target = flip(img, target)
        img = self.transform.normalize(img)
        img, target = self.transform.resize(img, target)
        return i, flipped, img, target


def _collate(batch):
    return batch


def pad_stack(tensors: list[Tensor], divisible: int = 32) -> Tensor:
    """Tensors (C, H, W) of different sizes, zero-padded to one (N, C, H', W') with H', W' multiples
    of `divisible` (GeneralizedRCNNTransform.batch_images does the same)."""
    h = max(t.shape[-2] for t in tensors)
    w = max(t.shape[-1] for t in tensors)
    h, w = int(math.ceil(h / divisible) * divisible), int(math.ceil(w / divisible) * divisible)
    out = tensors[0].new_zeros((len(tensors), tensors[0].shape[0], h, w))
    for k, t in enumerate(tensors):
        out[k, :, : t.shape[-2], : t.shape[-1]].copy_(t)
    return out


class PrefixCache:
    """Outputs of the body's frozen first units, per (image, flip), kept in memory: valid while
    those units stay frozen (a fixed function in eval mode), so each is computed once."""

    def __init__(self, stop: int) -> None:
        self.stop = stop
        self.entries: dict[tuple[int, bool], tuple[Tensor, dict[int, Tensor], tuple[int, int]]] = {}
        self.bytes = 0
        self.full = False
        self.hits = 0

    def get(self, key: tuple[int, bool]):
        hit = self.entries.get(key)
        self.hits += hit is not None
        return hit

    def put(self, key: tuple[int, bool], x: Tensor, levels: dict[int, Tensor], size: tuple[int, int]) -> None:
        nbytes = x.numel() * x.element_size() + sum(t.numel() * t.element_size() for t in levels.values())
        if self.bytes + nbytes > CACHE_LIMIT_BYTES:
            if not self.full:
                log(f"  the frozen layers' outputs no longer fit in {CACHE_LIMIT_BYTES >> 30} GB: the rest are recomputed")
            self.full = True
            return
        self.entries[key] = (x, levels, size)
        self.bytes += nbytes


def _place(t: Tensor, padded: tuple[int, int], batch: tuple[int, int]) -> Tensor:
    """A map computed on one image padded to `padded` (multiples of 32), zero-padded to the size the
    same unit's map has for the batch padded to `batch`: sizes scale with the stride (<= 32)."""
    h, w = batch[0] * t.shape[-2] // padded[0], batch[1] * t.shape[-1] // padded[1]
    out = t.new_zeros((t.shape[-3], h, w))
    out[:, : t.shape[-2], : t.shape[-1]] = t[0]
    return out


def pyramid_for(backbone: StagedBackbone, items: list[tuple[int, bool, Tensor]], cache: PrefixCache | None,
                device: torch.device) -> tuple[Tensor, "dict[str, Tensor]"]:
    """The padded image batch and its feature pyramid; the body starts from the cached outputs of
    its frozen first units where there are any (each computed once, on the image alone)."""
    batch = pad_stack([img for _, _, img in items]).to(device)
    if cache is None or cache.stop == 0:
        return batch, backbone(batch)
    hits = []
    for i, flipped, img in items:
        hit = cache.get((i, flipped))
        if hit is None:
            single = pad_stack([img]).to(device)
            with torch.no_grad():
                x, levels = backbone.trunk(single, 0, cache.stop)
            hit = (x, levels, (single.shape[-2], single.shape[-1]))
            cache.put((i, flipped), *hit)
        hits.append(hit)
    size = (batch.shape[-2], batch.shape[-1])
    x = torch.stack([_place(h[0], h[2], size) for h in hits])
    collected = {j: torch.stack([_place(h[1][j], h[2], size) for h in hits]) for j in hits[0][1]}
    _, collected = backbone.trunk(x, cache.stop, None, collected)
    return batch, backbone.pyramid(collected)


# ------------------------------------------------------------------------------------------ the loop
@dataclass
class DetectState:
    phase: int = 0
    epoch: int = 0            # epochs completed in this phase
    global_epoch: int = 0
    history: list[dict[str, Any]] | None = None
    phases: list[dict[str, Any]] | None = None
    best_score: tuple[float, float] | None = None
    best_epoch: int = -1
    images: int = 0
    step_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _precision(cfg: DetectConfig, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or cfg.precision == "fp32":
        return None
    if cfg.precision == "bf16" or (cfg.precision == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


class DetectionTrainer:
    """Phases of a strategy over a detector; every epoch ends in an atomic checkpoint."""

    def __init__(self, run_dir: Path, data: DetectionData, train_idx: np.ndarray, val_idx: np.ndarray,
                 model: nn.Module, spec: DetectorSpec, cfg: DetectConfig, device: torch.device,
                 num_workers: int = 0) -> None:
        self.run_dir, self.data, self.train_idx, self.val_idx = run_dir, data, train_idx, val_idx
        self.model, self.spec, self.cfg, self.device = model.to(device), spec, cfg, device
        self.backbone: StagedBackbone = model.backbone
        self.groups = self.backbone.group_params()
        self.phases = plan(Strategy.parse(cfg.strategy), len(self.groups), cfg.epochs, cfg.head_epochs,
                           cfg.unfreeze_every)
        self.samples = Samples(data, model, spec.kind == "mask")
        self.num_workers = num_workers
        self.state = DetectState(history=[], phases=[])
        self.cache: PrefixCache | None = None
        self.dtype = _precision(cfg, device)
        self.scaler = torch.amp.GradScaler("cuda") if self.dtype == torch.float16 else None

    # -- what trains ---------------------------------------------------------------------------------
    def _freeze(self, trainable: int) -> int:
        """Body groups below the top `trainable` are frozen, everything else trains; returns the first
        unit that runs with gradients (the frozen prefix ends there)."""
        G = len(self.groups)
        frozen = {f"backbone.{n}" for g in self.groups[: G - trainable] for n in g}
        for name, p in self.model.named_parameters():
            p.requires_grad_(name not in frozen)
        set_modes(self.model, self.cfg.bn)
        if trainable >= G:
            return 0
        return self.backbone.groups[G - trainable][0] if trainable else len(self.backbone.units)

    def _optimizer(self, trainable: int) -> torch.optim.Optimizer:
        cfg, G = self.cfg, len(self.groups)
        body = {f"backbone.{n}": g for g, names in enumerate(self.groups) for n in names}
        buckets: dict[tuple[float, float], list[Tensor]] = {}
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            g = body.get(name)
            lr = cfg.lr if g is None else cfg.lr * cfg.body_lr_mult * cfg.layer_decay ** (G - 1 - g)
            decay = cfg.weight_decay if p.ndim > 1 else 0.0
            buckets.setdefault((lr, decay), []).append(p)
        return torch.optim.SGD([{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in buckets.items()],
                               lr=cfg.lr, momentum=cfg.momentum)

    # -- the loop ------------------------------------------------------------------------------------
    def run(self) -> None:
        for index, phase in enumerate(self.phases):
            if index < self.state.phase:
                continue
            self._phase(index, phase)
            self.state.phase, self.state.epoch = index + 1, 0
            self.checkpoint(None, None)

    def _phase(self, index: int, phase: Phase) -> None:
        cfg, s = self.cfg, self.state
        stop = self._freeze(phase.trainable)
        if self.cache is None or self.cache.stop != stop:
            self.cache = PrefixCache(stop) if stop else None
        optimizer = self._optimizer(phase.trainable)
        steps = math.ceil(len(self.train_idx) / cfg.batch_size)
        scheduler = warmup_cosine(optimizer, phase.epochs * steps, int(cfg.warmup * phase.epochs * steps))
        if s.epoch:
            self._load_optimizer(optimizer, scheduler)
        else:
            assert s.phases is not None
            s.phases.append({"phase": index, "name": phase.name, "trainable_groups": phase.trainable,
                             "groups": len(self.groups), "frozen_units_cached": stop, "epochs_planned": phase.epochs,
                             "seconds": 0.0})
        n_train = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        log(f"phase {index + 1}/{len(self.phases)} '{phase.name}': {phase.trainable} of {len(self.groups)} backbone "
            f"groups train ({n_train / 1e6:.1f}M parameters)" + (
                f"; the first {stop} body units are frozen: computed once per image and flip, then reused" if stop else ""))
        for epoch in range(s.epoch, phase.epochs):
            t0 = time.perf_counter()
            loss = self._epoch(optimizer, scheduler)
            record: dict[str, Any] = {"epoch": s.global_epoch + 1, "phase": index, "phase_epoch": epoch + 1,
                                      "train_loss": loss, "lr": optimizer.param_groups[0]["lr"]}
            last = epoch + 1 == phase.epochs
            if len(self.val_idx) and ((epoch + 1) % cfg.eval_every == 0 or last):
                from .evaluate import coco_metrics, detect

                m = coco_metrics(detect(self.model, self.data, self.val_idx, self.device), self.data, self.val_idx,
                                 masks=False)
                set_modes(self.model, cfg.bn)
                record.update(val_map=m["map"], val_map_50=m["map_50"])
                score = (m["map"], m["map_50"])
                if s.best_score is None or score > tuple(s.best_score):
                    s.best_score, s.best_epoch = score, s.global_epoch + 1
            s.global_epoch += 1
            s.epoch = epoch + 1
            assert s.history is not None and s.phases is not None
            s.history.append(record)
            s.phases[-1]["seconds"] = round(s.phases[-1]["seconds"] + time.perf_counter() - t0, 3)
            s.phases[-1]["epochs_run"] = epoch + 1
            log(f"  epoch {s.global_epoch}: train loss {loss:.4f}" + (
                f", val mAP {record['val_map']:.3f}, mAP@.5 {record['val_map_50']:.3f}" if "val_map" in record else "")
                + f" ({time.perf_counter() - t0:.0f} s)")
            self.checkpoint(optimizer, scheduler)

    def _epoch(self, optimizer, scheduler) -> float:
        cfg, s = self.cfg, self.state
        torch.manual_seed(cfg.seed * 100_003 + s.global_epoch)  # the samplers of RPN and ROI heads: resumable
        rng = np.random.default_rng([cfg.seed, s.global_epoch])
        order = rng.permutation(self.train_idx)
        flips = rng.random(len(order)) < 0.5 if cfg.augment == "flip" else np.zeros(len(order), dtype=bool)
        keys = [(int(i), bool(f)) for i, f in zip(order, flips)]
        loader = torch.utils.data.DataLoader(_Keyed(self.samples, keys), batch_size=cfg.batch_size,
                                             collate_fn=_collate, num_workers=self.num_workers)
        total, n = 0.0, 0
        for batch in loader:
            t0 = time.perf_counter()
            loss = self.step(batch)
            optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(optimizer)
                self._clip()
                self.scaler.step(optimizer)
                self.scaler.update()
            else:
                loss.backward()
                self._clip()
                optimizer.step()
            scheduler.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise HeadstartError(f"training diverged (loss {value}) in epoch {s.global_epoch + 1}; "
                                     f"lower --lr (now {cfg.lr})")
            total += value * len(batch)
            n += len(batch)
            s.images += len(batch)
            s.step_seconds += time.perf_counter() - t0
        return total / max(1, n)

    def _clip(self) -> None:
        """A fresh head on small data can blow up in its first steps: clip the gradient norm."""
        if self.cfg.clip_grad:
            torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.grad is not None],
                                           self.cfg.clip_grad)

    def step(self, batch: list[tuple[int, bool, Tensor, dict[str, Tensor]]]) -> Tensor:
        """One batch through the detector in training mode: the sum of its losses."""
        from torchvision.models.detection.image_list import ImageList

        dev = self.device
        targets = [{k: v.to(dev) for k, v in t.items()} for *_, t in batch]
        with torch.autocast(dev.type, dtype=self.dtype, enabled=self.dtype is not None):
            images, features = pyramid_for(self.backbone, [(i, f, img) for i, f, img, _ in batch], self.cache, dev)
            image_list = ImageList(images, [tuple(img.shape[-2:]) for *_, img, _ in batch])
            proposals, rpn_losses = self.model.rpn(image_list, features, targets)
            _, head_losses = self.model.roi_heads(features, proposals, image_list.image_sizes, targets)
        return sum(rpn_losses.values()) + sum(head_losses.values())

    # -- checkpoints ---------------------------------------------------------------------------------
    def checkpoint(self, optimizer, scheduler) -> None:
        ckpt = self.run_dir / CHECKPOINT
        weights = {k: v.detach().contiguous().cpu() for k, v in self.model.state_dict().items()}
        with atomic_dir(ckpt, replace=True) as tmp:
            save_file(weights, str(tmp / "weights.safetensors"))
            if self.state.best_epoch == self.state.global_epoch and self.state.best_epoch > 0:
                save_file(weights, str(tmp / "best.safetensors"))
            elif (ckpt / "best.safetensors").is_file():
                shutil.copy2(ckpt / "best.safetensors", tmp / "best.safetensors")
            if optimizer is not None:
                torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
                           tmp / "optimizer.pt")
            atomic_write_json(tmp / "state.json", self.state.to_dict())

    def resume(self) -> None:
        ckpt = self.run_dir / CHECKPOINT
        if (ckpt / "state.json").is_file():
            saved = json.loads((ckpt / "state.json").read_text())
            if saved.get("best_score") is not None:
                saved["best_score"] = tuple(saved["best_score"])
            self.state = DetectState(**saved)
            self.model.load_state_dict(load_file(str(ckpt / "weights.safetensors")))

    def _load_optimizer(self, optimizer, scheduler) -> None:
        path = self.run_dir / CHECKPOINT / "optimizer.pt"
        if not path.is_file():
            raise HeadstartError(f"checkpoint {path.parent} has no optimizer state; the run cannot be resumed exactly")
        saved = torch.load(path, map_location="cpu", weights_only=True)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])


class _Keyed(torch.utils.data.Dataset):
    def __init__(self, samples: Samples, keys: list[tuple[int, bool]]) -> None:
        self.samples, self.keys = samples, keys

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, k: int):
        return self.samples[self.keys[k]]


# ------------------------------------------------------------------------------------------ fit
def input_sizes(data: DetectionData, min_size: int | None, max_size: int | None) -> tuple[int, int]:
    """The detector's resize: the shorter side to `min_size` (default: DATA's median shorter side,
    kept within 256..800 and rounded to a multiple of 32), the longer side at most `max_size`."""
    if min_size is None:
        median = float(np.median([min(im.width, im.height) for im in data.images]))
        min_size = int(min(800, max(256, round(median / 32) * 32)))
    if min_size < 64:
        raise HeadstartError(f"--input-size must be >= 64 pixels; got {min_size}")
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
DETECTORS = ("auto", "faster", "mask")


def fit_detector(
    data: str | Path,
    model: str | None = None,
    out: str | Path = "runs/detect",
    *,
    strategy: str = "auto",
    detector: str = "auto",
    arch: str | None = None,
    epochs: int | None = None,
    head_epochs: int | None = None,
    unfreeze_every: int = 2,
    lr: float | None = None,
    body_lr_mult: float = 1.0,
    layer_decay: float = 1.0,
    weight_decay: float = 1e-4,
    batch_size: int | None = None,
    warmup: float = 0.1,
    clip_grad: float = 10.0,
    bn: str = "frozen",
    augment: str = "flip",
    eval_every: int = 4,
    input_size: int | None = None,
    max_size: int | None = None,
    precision: str = "auto",
    seed: int = 0,
    val_split: float = 0.2,
    skip_bad: bool = False,
    overwrite: bool = False,
    allow_download: bool = False,
    device: str | None = None,
    num_workers: int = 0,
):
    """Transfer a detector to the boxes (and masks) in `data` (COCO JSON or Pascal VOC) and write the
    run to `out`. `model` is a zoo card (its ImageNet body gets new detection heads; default
    mobilenet_v2) or a torchvision detector checkpoint (only its predictors are replaced). Mask R-CNN
    when DATA has masks (`detector` "faster" to ignore them)."""
    from ..strategies import Strategy as _S

    t_start = time.perf_counter()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise HeadstartError("detection trains in one process for now; drop --processes")
    if strategy.strip().lower() != "auto":
        _S.parse(strategy)  # a typo fails before any work
    if detector not in DETECTORS:
        raise HeadstartError(f"--detector must be one of {', '.join(DETECTORS)}; got '{detector}'")
    if not 0.0 <= val_split < 1.0:
        raise HeadstartError(f"--val-split must be in [0, 1); got {val_split}")
    out_dir = check_out_dir(out, overwrite)
    card, checkpoint = resolve_model(model, allow_download)
    samples = read_detection_data(data, skip_bad=skip_bad, log=log)
    if detector == "mask" and not samples.has_masks:
        raise HeadstartError(f"--detector mask needs masks, and DATA '{data}' has none (COCO 'segmentation'); "
                             "use --detector faster")
    kind = "mask" if samples.has_masks and detector != "faster" else "faster"
    min_size, max_size = input_sizes(samples, input_size, max_size)
    train_idx, val_idx = split_images(samples, val_split, seed)
    dev = pick_device(device)
    if card is not None:
        from ..zoo import locate

        locate(card, allow_download=allow_download)
        pre = card.preprocessing
        spec = DetectorSpec(base="card", arch=card.architecture, kind=kind, classes=samples.classes,
                            min_size=min_size, max_size=max_size, mean=tuple(pre.mean), std=tuple(pre.std))
        torch.manual_seed(seed)
        net = build_detector(spec, card)
        start = {"card": card.name}
    else:
        assert checkpoint is not None
        spec = DetectorSpec(base="torchvision", arch=arch or "", kind=kind, classes=samples.classes,
                            min_size=min_size, max_size=max_size)
        torch.manual_seed(seed)
        net, spec, start = detector_from_checkpoint(checkpoint, spec, arch, None, log=log)
        if start["reused_classes"]:
            log(f"reused the checkpoint's rows for {', '.join(start['reused_classes'])} (same class names)")
    chosen, reason = _detect_strategy(strategy, len(train_idx), card is None)
    _S.parse(chosen).check(len(net.backbone.groups), card.name if card else spec.arch)
    if epochs is None:  # about 450 optimizer steps in all, 12..60 epochs (candy, 60 scenes: 30 epochs, ~10 min on 2 cores)
        epochs = int(min(60, max(12, round(450 * (batch_size or 4) / max(1, len(train_idx))))))
    cfg = DetectConfig(strategy=chosen, epochs=epochs, head_epochs=head_epochs or epochs, unfreeze_every=unfreeze_every,
                       lr=lr or 0.01, body_lr_mult=body_lr_mult, layer_decay=layer_decay, weight_decay=weight_decay,
                       batch_size=batch_size or 4, warmup=warmup, clip_grad=clip_grad, bn=bn, augment=augment, eval_every=eval_every,
                       seed=seed, val_split=val_split, precision=precision)
    log(f"detector: {'Mask' if kind == 'mask' else 'Faster'} R-CNN from {start.get('card') or start['checkpoint']}, "
        f"{len(samples.classes)} classes, images resized to {min_size} px (longer side <= {max_size}); "
        f"{len(train_idx)} training and {len(val_idx)} validation images; strategy {chosen} ({reason})")
    if out_dir.exists():
        shutil.rmtree(out_dir)  # check_out_dir allowed it: a finished run, or --overwrite
    out_dir.mkdir(parents=True)
    record = {"format": RUN_FORMAT, "status": "training", "headstart": __version__, "task": "detect",
              "spec": spec.to_dict(), "card": card.to_dict() if card else None, "start": start,
              "classes": list(samples.classes), "strategy": chosen, "strategy_reason": reason,
              "config": cfg.to_dict(), "data": _data_record(samples, skip_bad),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic_write_json(out_dir / RUN_FILE, record)
    return _train(out_dir, samples, train_idx, val_idx, net, spec, cfg, dev, record, num_workers, t_start)


def _detect_strategy(strategy: str, n_train: int, from_detector: bool) -> tuple[str, str]:
    """`auto` for detection. From an ImageNet body, measured on the synthetic candy scenes (60 training,
    40 held-out, mobilenet_v2, 30 epochs, benchmarks/bench_detect.py): held-out mAP@.5 / mAP finetune
    0.983 / 0.750, partial:2 0.976 / 0.739, lp-ft 0.970 / 0.731, linear-probe 0.931 / 0.574. From a
    detector checkpoint: torchvision's own default (3 of 5 backbone groups train), not measured here
    (no COCO weights offline)."""
    if strategy.strip().lower() != "auto":
        return Strategy.parse(strategy).name, f"chosen with --strategy {strategy}"
    if from_detector:
        return "partial:3", ("a detector checkpoint: its backbone, pyramid and proposals already fit detection, so the "
                             "top three backbone groups and the heads adapt (torchvision's own fine-tuning default)")
    return "finetune", ("an ImageNet body under new detection heads: the features must learn to localise, so every "
                        "layer trains, with frozen BatchNorm statistics")


def _data_record(samples: DetectionData, skip_bad: bool) -> dict[str, Any]:
    return {"source": samples.source, "format": samples.format, "fingerprint": samples.fingerprint(),
            "n": len(samples), "classes": list(samples.classes), "boxes": samples.counts(),
            "masks": samples.has_masks, "skip_bad": skip_bad}


def _train(out_dir: Path, samples: DetectionData, train_idx: np.ndarray, val_idx: np.ndarray, net: nn.Module,
           spec: DetectorSpec, cfg: DetectConfig, dev: torch.device, record: dict[str, Any], num_workers: int,
           t_start: float, resume: bool = False):
    from .run import DetectionRun

    trainer = DetectionTrainer(out_dir, samples, train_idx, val_idx, net, spec, cfg, dev, num_workers)
    if resume:
        trainer.resume()
    trainer.run()
    s = trainer.state
    best = out_dir / CHECKPOINT / "best.safetensors"
    if best.is_file():
        net.load_state_dict(load_file(str(best)))
    net = net.cpu().eval()
    best_record = next((h for h in (s.history or []) if h["epoch"] == s.best_epoch), None)
    metrics = {"task": "detect", "model": record["start"].get("card") or record["start"].get("checkpoint"),
               "detector": spec.kind, "strategy": cfg.strategy, "strategy_reason": record["strategy_reason"],
               "val_map": best_record.get("val_map") if best_record else None,
               "val_map_50": best_record.get("val_map_50") if best_record else None,
               "best_epoch": s.best_epoch if best_record else s.global_epoch,
               "n_train": int(len(train_idx)), "n_val": int(len(val_idx)), "n_classes": len(samples.classes),
               "boxes": samples.counts(), "epochs_run": s.global_epoch, "phases": s.phases, "history": s.history,
               "train_images_per_second": round(s.images / s.step_seconds, 2) if s.step_seconds else None,
               "input_size": spec.min_size, "device": str(dev), "config": cfg.to_dict(), "start": record["start"],
               "headstart": __version__, "total_seconds": round(time.perf_counter() - t_start, 3)}
    info = dict(record, status="finished", saved=time.strftime("%Y-%m-%dT%H:%M:%S"))
    run = DetectionRun(dir=out_dir, spec=spec, model=net, info=info, metrics=metrics)
    run.save_in_place()
    shutil.rmtree(out_dir / CHECKPOINT, ignore_errors=True)
    return run


def resume_detector(run_dir: Path, info: dict[str, Any], device: str | None = None, num_workers: int = 0):
    """Continue a detection run that was stopped, at its last checkpoint."""
    from ..zoo.card import ModelCard

    t_start = time.perf_counter()
    cfg = DetectConfig.from_dict(info["config"])
    spec = DetectorSpec.from_dict(info["spec"])
    samples = read_detection_data(info["data"]["source"], skip_bad=info["data"].get("skip_bad", False), log=log)
    if samples.fingerprint() != info["data"]["fingerprint"]:
        raise HeadstartError(f"--resume '{run_dir}': the files of {info['data']['source']} changed since the run "
                             "started; start a new run with --out")
    train_idx, val_idx = split_images(samples, cfg.val_split, cfg.seed)
    card = ModelCard.from_dict(info["card"]) if info.get("card") else None
    if (run_dir / CHECKPOINT / "state.json").is_file():  # weights come from the checkpoint
        net = build_detector(spec, card, pretrained=False)
    else:  # stopped before its first checkpoint: start again from the pretrained weights, as fit did
        torch.manual_seed(cfg.seed)
        net = build_detector(spec, card) if card is not None else \
            detector_from_checkpoint(Path(info["start"]["checkpoint"]), spec, spec.arch, None, log=log)[0]
    log(f"resuming {run_dir} ({cfg.strategy})")
    return _train(run_dir, samples, train_idx, val_idx, net, spec, cfg, pick_device(device), info, num_workers,
                  t_start, resume=True)
