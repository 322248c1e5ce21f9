"""The training loop for runs that train the body, read top to bottom.

    build the network (pretrained body + new head)
    for each phase of the strategy:
        head-only phase  -> train the head on cached features (probe.py), no body forward pass
        body phase       -> freeze / unfreeze groups, parameter groups, AdamW, warm-up + cosine,
                            epochs of augmented batches, validation, a checkpoint after every epoch
    keep the best validation epoch; write the run

Hugging Face Accelerate owns the device, mixed precision, gradient accumulation, DDP and
the trackers; the loop does not know how many processes run it. Every epoch's randomness
(shuffling, augmentation, dropout) is derived from (seed, epoch), and every epoch ends in an
atomic checkpoint (weights, optimizer, scheduler, history), so a killed run resumes at the
same phase and epoch and ends with the same weights as one that was never interrupted.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from . import __version__
from .console import log, progress
from .data.images import ImageSamples
from .data.transforms import AUGMENTATIONS, ImageLoader, LabelledImages, TrainLoader, normalize
from .errors import HeadstartError
from .features import Features
from .fileio import atomic_dir, atomic_write_json
from .heads import HeadSpec
from .probe import HeadTraining, class_weights, train_head
from .run import RUN_FORMAT, Run, body_fingerprint
from .runtime import default_workers, release_free_memory
from .strategies import (BN_POLICIES, L2SP, Phase, Strategy, param_groups, plan, set_modes, set_trainable,
                         warmup_cosine)
from .surgery import TransferModel, depth_groups
from .text.inputs import LabelledTokens, Tokenized, collate
from .zoo.card import ModelCard

CHECKPOINT = "checkpoint"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
TRACKERS = ("tensorboard", "mlflow")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what a run computes; saved with the run, compared on --resume."""

    strategy: str
    head: dict[str, Any]
    epochs: int
    head_epochs: int  # detection's frozen-body first phase; a classification head phase is one exact fit
    unfreeze_every: int = 1
    lr: float = 1e-3
    body_lr_mult: float = 0.1
    layer_decay: float = 1.0
    l2sp: float = 0.0
    weight_decay: float = 1e-4
    batch_size: int = 16
    accumulate: int = 1
    warmup: float = 0.1
    patience: int = 5
    augment: str = "crop-flip"
    bn: str = "frozen"
    precision: str = "auto"
    seed: int = 0
    val_split: float = 0.2
    class_balance: bool = True
    head_c: float | None = None  # the head phase's L2 strength (None: chosen by cross-validation)

    def __post_init__(self) -> None:
        checks = [
            ("epochs", self.epochs >= 1, ">= 1"), ("unfreeze-every", self.unfreeze_every >= 1, ">= 1"),
            ("lr", self.lr > 0, "> 0"), ("body-lr-mult", self.body_lr_mult > 0, "> 0"),
            ("layer-decay", 0 < self.layer_decay <= 1, "in (0, 1]"), ("l2sp", self.l2sp >= 0, ">= 0"),
            ("weight-decay", self.weight_decay >= 0, ">= 0"), ("batch-size", self.batch_size >= 1, ">= 1"),
            ("accumulate", self.accumulate >= 1, ">= 1"), ("warmup", 0 <= self.warmup < 1, "in [0, 1)"),
            ("patience", self.patience >= 1, ">= 1"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise HeadstartError(f"--{name} must be {rule}; got {getattr(self, name.replace('-', '_'))}")
        for name, value, allowed in (("augment", self.augment, AUGMENTATIONS), ("bn", self.bn, BN_POLICIES),
                                     ("precision", self.precision, PRECISIONS)):
            if value not in allowed:
                raise HeadstartError(f"--{name} must be one of {', '.join(allowed)}; got '{value}'")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class RunState:
    """Where a run is: phase index, epochs done in it, and what was learned so far."""

    phase: int = 0
    epoch: int = 0  # epochs completed in this phase
    global_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    phases: list[dict[str, Any]] = field(default_factory=list)
    best_score: float | None = None
    best_loss: float | None = None
    best_epoch: int = -1
    phase_best: float | None = None
    phase_best_loss: float | None = None
    since_best: int = 0
    images: int = 0
    body_seconds: float = 0.0
    stopped_early: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _epoch_seed(seed: int, global_epoch: int) -> int:
    return seed * 1_000_003 + global_epoch


def _precision(cfg: TrainConfig, device_type: str) -> str:
    if cfg.precision == "fp32":
        return "no"
    if cfg.precision in ("bf16", "fp16"):
        return cfg.precision
    if device_type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"  # measured on a 2-core CPU: bf16 autocast trains EfficientNet-Lite0 no faster than fp32


def make_accelerator(cfg: TrainConfig, run_dir: Path, tracker: str | None, cpu: bool = False):
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration

    if tracker is not None and tracker not in TRACKERS:
        raise HeadstartError(f"--tracker must be one of {', '.join(TRACKERS)}; got '{tracker}'")
    if tracker == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise HeadstartError("--tracker tensorboard needs the tensorboard package: pip install tensorboard") from None
    if tracker == "mlflow":
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise HeadstartError("--tracker mlflow needs the mlflow package: pip install mlflow-skinny") from None
    device_type = "cpu" if cpu or not torch.cuda.is_available() else "cuda"
    precision = _precision(cfg, device_type)
    _fresh_accelerate_state(precision, cpu)
    return Accelerator(
        cpu=cpu,
        mixed_precision=precision,
        gradient_accumulation_steps=cfg.accumulate,
        # --batch-size is the global batch: split across processes, so N processes compute
        # what one process would; the shuffling seed is shared and set per epoch.
        dataloader_config=DataLoaderConfiguration(split_batches=True, use_seedable_sampler=True, data_seed=cfg.seed),
        log_with=tracker,
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "logs")),
    )


def _fresh_accelerate_state(precision: str, cpu: bool) -> None:
    """Accelerate keeps one state per process: it refuses an Accelerator with another precision
    than the first one's, and keeps the first one's device. A second fit in the same Python
    process (a notebook, a script comparing bf16 with fp32, or the CPU with the GPU) starts that
    state anew. Under torchrun the distributed part of it (the process group) stays."""
    from accelerate.state import AcceleratorState, PartialState

    if not AcceleratorState._shared_state:
        return
    state = AcceleratorState()
    if state.mixed_precision == precision and cpu == (state.device.type == "cpu"):
        return
    AcceleratorState._reset_state(reset_partial_state=PartialState().num_processes == 1)


class Trainer:
    """One run of a strategy that trains the body; `run()` goes from the state it is given to the end."""

    def __init__(
        self,
        run_dir: Path,
        card: ModelCard,
        samples: ImageSamples,
        train_idx: np.ndarray,
        val_idx: np.ndarray,
        features: Callable[[], Features],
        cfg: TrainConfig,
        accelerator,
        model: TransferModel,
        num_workers: int | None = None,
        checkpoints: bool = True,
        verbose: bool = True,
        tokens: Tokenized | None = None,
        watch: Callable[[int, np.ndarray, bool], bool] | None = None,
    ) -> None:
        """checkpoints=False and verbose=False serve throwaway runs (the advisor's from-scratch
        baselines): nothing is written and nothing is said per epoch. `tokens` (text DATA): every
        sample's token ids; batches are padded per batch instead of decoded and augmented.
        `watch` (auto's trials, headstart.auto.Trial) sees each epoch's held-out predictions and
        whether it trained the body, and stops the run (headstart.auto.TrialStopped) by returning False."""
        self.tokens, self.watch, self.val_pred = tokens, watch, None
        self.run_dir, self.card, self.samples, self.cfg = run_dir, card, samples, cfg
        self.write_checkpoints, self.verbose = checkpoints, verbose
        self.train_idx, self.val_idx, self.features = train_idx, val_idx, features
        self.acc = accelerator
        self.model = model
        self.state = RunState()
        self.groups = depth_groups(model.body)
        self.phases = plan(Strategy.parse(cfg.strategy), len(self.groups), cfg.epochs, cfg.head_epochs,
                           cfg.unfreeze_every)
        self.num_workers = default_workers(accelerator.device) if num_workers is None else num_workers
        self.l2sp = L2SP(model, cfg.l2sp) if cfg.l2sp else None  # anchored at the pretrained weights
        weight = torch.as_tensor(class_weights(samples.labels[train_idx], len(samples.classes)), dtype=torch.float32)
        self.loss_fn = nn.CrossEntropyLoss(weight=weight if cfg.class_balance else None)
        self.body_images = 0  # counted by a forward hook on the body, per phase
        model.body.register_forward_hook(lambda m, i, o: self._count(i[0]))

    def _count(self, x: torch.Tensor) -> None:
        self.body_images += int(x.shape[0])

    # -- the run ---------------------------------------------------------------------------------
    def run(self) -> None:
        for i, phase in enumerate(self.phases):
            if i < self.state.phase:
                continue
            if phase.from_cache:
                self.features()  # the first extraction (or a cache hit) happens before the phase is counted
            self.body_images = 0
            t0 = time.perf_counter()
            if phase.from_cache:
                self._head_phase(phase)
            else:
                self._body_phase(i, phase)
            self.state.phases.append({
                "phase": i, "name": phase.name, "trainable_groups": phase.trainable, "groups": len(self.groups),
                "epochs_planned": phase.epochs, "epochs_run": sum(1 for h in self.state.history if h["phase"] == i)
                if not phase.from_cache else self.state.history[-1]["phase_epoch"],
                "from_cache": phase.from_cache, "stopped_early": self.state.stopped_early,
                "body_forward_images": self.body_images, "seconds": round(time.perf_counter() - t0, 3),
            })
            self.state.phase, self.state.epoch = i + 1, 0
            self.checkpoint(None, None)
            if self.state.stopped_early:
                break

    def _head_phase(self, phase: Phase) -> None:
        """Head only: fitted on the training split's cached features (headstart.probe: one exact fit,
        its L2 strength by cross-validation), with no body forward pass; scored on the validation split."""
        x, y = self.features().array, self.samples.labels
        tr, va = self.train_idx, self.val_idx
        cfg = self.cfg
        result = train_head(
            HeadSpec.from_dict(cfg.head), x[tr], y[tr], x[va] if len(va) else None, y[va] if len(va) else None,
            len(self.samples.classes), HeadTraining(class_balance=cfg.class_balance, seed=cfg.seed, c=cfg.head_c))
        self.model.head.load_state_dict({k: torch.from_numpy(v) for k, v in result.weights.items()})
        self.state.global_epoch += 1
        record = {"phase": self.state.phase, "phase_epoch": 1, "epoch": self.state.global_epoch,
                  "train_loss": None, "val_loss": result.val_loss, "head_c": result.c,
                  "val_accuracy": result.val_accuracy, "val_balanced_accuracy": result.val_balanced_accuracy,
                  "head_only": True}
        self.state.history.append(record)
        self._consider_best(result.val_balanced_accuracy if cfg.class_balance else result.val_accuracy,
                            result.val_loss)
        self._watched(result.predict(x[va]) if len(va) else None, trained_body=False)

    def _watched(self, pred: np.ndarray | None, trained_body: bool) -> None:
        if self.watch is not None and pred is not None and not self.watch(self.state.global_epoch, pred, trained_body):
            from .auto import TrialStopped

            raise TrialStopped()

    def _body_phase(self, index: int, phase: Phase) -> None:
        cfg, acc, model = self.cfg, self.acc, self.model
        set_trainable(model, self.groups, phase.trainable)
        pre = self.card.preprocessing
        labels = self.samples.labels
        collate_fn = None
        if self.tokens is not None:  # text: tokenized once, padded per batch; nothing to decode, so no workers
            train_set = LabelledTokens(self.tokens.subset(self.train_idx), labels[self.train_idx])
            val_set = LabelledTokens(self.tokens.subset(self.val_idx), labels[self.val_idx])
            collate_fn, workers = collate(self.tokens.pad_id, 8 if acc.device.type == "cuda" else 1,
                                          self.tokens.max_length), 0
        else:
            train_set = LabelledImages([self.samples.paths[i] for i in self.train_idx], labels[self.train_idx],
                                       TrainLoader(pre, cfg.augment), seed=cfg.seed)
            val_set = LabelledImages([self.samples.paths[i] for i in self.val_idx], labels[self.val_idx],
                                     ImageLoader(pre))
            workers = self.num_workers
        batch = min(cfg.batch_size, len(train_set))
        # Workers start once per phase (persistent): forking them again every epoch made each
        # following epoch's forward pass about twice as slow on a CPU (measured), and memory is
        # released first (see runtime.release_free_memory). Validation sets are small and decode
        # in the main process.
        train_loader = torch.utils.data.DataLoader(
            train_set, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
            pin_memory=acc.device.type == "cuda", persistent_workers=workers > 0, collate_fn=collate_fn)
        val_loader = torch.utils.data.DataLoader(val_set, batch_size=batch, num_workers=0,
                                                 pin_memory=acc.device.type == "cuda", collate_fn=collate_fn)
        optimizer = torch.optim.AdamW(param_groups(model, self.groups, phase.trainable, cfg.lr, cfg.body_lr_mult,
                                                   cfg.layer_decay, cfg.weight_decay, cfg.l2sp))
        # optimizer steps: Accelerate also steps on a last, incomplete accumulation of an epoch
        steps = phase.epochs * max(1, math.ceil((len(train_set) // batch) / cfg.accumulate))
        scheduler = warmup_cosine(optimizer, steps, int(cfg.warmup * steps))
        if self.tokens is None:
            model.to(memory_format=torch.channels_last)
        self.loss_fn.to(acc.device)
        wrapped, optimizer, train_loader, val_loader, scheduler = acc.prepare(
            model, optimizer, train_loader, val_loader, scheduler)
        if self.state.epoch > 0:  # resuming inside this phase
            self._load_optimizer(optimizer, scheduler)
        release_free_memory()  # the workers fork at the first epoch
        last_phase = index == len(self.phases) - 1
        if self.state.epoch == 0:  # patience counts within the phase: a new phase may start below the best
            self.state.since_best, self.state.phase_best, self.state.phase_best_loss = 0, None, None
        for epoch in range(self.state.epoch, phase.epochs):
            seed = _epoch_seed(cfg.seed, self.state.global_epoch)
            _seed_everything(seed)
            train_loader.set_epoch(self.state.global_epoch)
            train_set.set_epoch(self.state.global_epoch)
            set_modes(acc.unwrap_model(wrapped), cfg.bn)
            t0 = time.perf_counter()
            try:
                train_loss, seen = self._train_epoch(wrapped, optimizer, scheduler, train_loader, phase, epoch)
            except torch.OutOfMemoryError:
                b = cfg.batch_size
                raise HeadstartError(
                    f"out of {acc.device.type.upper()} memory in phase '{phase.name}' with --batch-size {b}; try "
                    f"--batch-size {max(1, b // 2)} --accumulate {cfg.accumulate * 2} (the same effective batch); "
                    f"{self._kept()}"
                ) from None
            seconds = time.perf_counter() - t0
            self.state.body_seconds += seconds
            self.state.images += seen
            record = {"phase": index, "phase_epoch": epoch + 1, "epoch": self.state.global_epoch + 1,
                      "train_loss": train_loss,
                      "images_per_second": round(seen / seconds, 2), **self._validate(wrapped, val_loader)}
            self.state.history.append(record)
            self.state.epoch, self.state.global_epoch = epoch + 1, self.state.global_epoch + 1
            self._consider_best(record.get("val_balanced_accuracy" if cfg.class_balance else "val_accuracy"),
                                record.get("val_loss"))
            if acc.is_main_process and self.verbose:
                self._log_epoch(record, f"{phase.name} {epoch + 1}/{phase.epochs}")
            # decided before the checkpoint, so that a run resumed from it stops where this one does
            self.state.stopped_early = bool(last_phase and len(self.val_idx) and self.state.since_best >= cfg.patience)
            self.checkpoint(optimizer, scheduler)
            self._watched(self.val_pred, trained_body=True)
            if self.state.stopped_early:
                break
        acc.free_memory()  # drop the DDP wrapper and the optimizer: the next phase wraps anew
        self.model = acc.unwrap_model(wrapped)

    def _train_epoch(self, wrapped, optimizer, scheduler, loader, phase: Phase, epoch: int) -> tuple[float, int]:
        acc = self.acc
        total, seen, step = 0.0, 0, 0
        with progress(f"{phase.name} epoch {epoch + 1}/{phase.epochs}", len(loader)) as advance:
            for inputs, labels in loader:
                with acc.accumulate(wrapped):
                    x = self._model_input(inputs)
                    with acc.autocast():
                        loss = self.loss_fn(wrapped(x), labels)
                        if self.l2sp is not None:
                            loss = loss + self.l2sp(acc.unwrap_model(wrapped))
                    if not torch.isfinite(loss):
                        self._diverged(loss.item(), phase, epoch, step, optimizer)
                    acc.backward(loss)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                total += float(loss.detach()) * len(labels)
                seen += len(labels)
                step += 1
                advance(1)
        seen_all = int(acc.reduce(torch.tensor(seen, device=acc.device), reduction="sum"))
        loss_all = float(acc.reduce(torch.tensor(total, device=acc.device), reduction="sum"))
        return loss_all / max(1, seen_all), seen_all

    @torch.no_grad()
    def _validate(self, wrapped, loader) -> dict[str, Any]:
        if not len(self.val_idx):
            return {}
        acc = self.acc
        model = acc.unwrap_model(wrapped)
        was = {m: m.training for m in model.modules()}
        model.eval()
        preds, ys, losses = [], [], []
        with acc.autocast():
            for inputs, labels in loader:
                logits = wrapped(self._model_input(inputs)).float()
                loss = nn.functional.cross_entropy(logits, labels, reduction="none",
                                                   weight=self.loss_fn.weight.to(acc.device)
                                                   if self.loss_fn.weight is not None else None)
                p, y, lo = acc.gather_for_metrics((logits.argmax(1), labels, loss))
                preds.append(p.cpu())
                ys.append(y.cpu())
                losses.append(lo.cpu())
        for m, t in was.items():
            m.training = t
        pred, y = torch.cat(preds), torch.cat(ys)
        self.val_pred = pred.numpy()
        recalls = [float((pred[y == c] == c).float().mean()) for c in torch.unique(y)]
        return {"val_loss": float(torch.cat(losses).mean()), "val_accuracy": float((pred == y).sum()) / len(y),
                "val_balanced_accuracy": float(np.mean(recalls))}

    def _model_input(self, inputs: torch.Tensor) -> torch.Tensor:
        """A batch as the network takes it: images normalized on the device, token ids moved there."""
        if self.tokens is not None:
            return inputs.to(self.acc.device)
        return normalize(inputs, self.card.preprocessing, self.acc.device)

    def _consider_best(self, score: float | None, loss: float | None) -> None:
        """Track the best validation epoch of the run (its weights are kept) and of the phase (for
        patience): the higher accuracy, and on equal accuracy the lower validation loss. With a
        handful of validation examples accuracies tie often; an epoch that only ties the best so
        far (say, lp-ft's linear probe) does not replace it."""
        if score is None:
            return
        s = self.state
        loss = loss if loss is not None and math.isfinite(loss) else math.inf

        def better(best: float | None, best_loss: float | None) -> bool:
            return best is None or (score, -loss) > (best, -(math.inf if best_loss is None else best_loss))

        if better(s.best_score, s.best_loss):
            s.best_score, s.best_loss, s.best_epoch = score, loss, s.global_epoch
        if better(s.phase_best, s.phase_best_loss):
            s.phase_best, s.phase_best_loss, s.since_best = score, loss, 0
        else:
            s.since_best += 1

    def _kept(self) -> str:
        ckpt = self.run_dir / CHECKPOINT
        if (ckpt / "state.json").is_file():
            return f"the last good checkpoint ({ckpt}, after epoch {self.state.global_epoch}) is intact"
        return "no epoch had finished, so there is no checkpoint"

    def _diverged(self, value: float, phase: Phase, epoch: int, step: int, optimizer) -> None:
        lr = max(g["lr"] for g in optimizer.param_groups)
        raise HeadstartError(
            f"the loss became {value} in phase '{phase.name}', epoch {epoch + 1}, step {step + 1} (learning rate "
            f"{lr:.2g}); training stopped and {self._kept()}: lower --lr (try --lr {self.cfg.lr / 10:.2g}) and "
            "run fit again"
        )

    def _log_epoch(self, record: dict[str, Any], where: str) -> None:
        parts = [f"{where}: train loss {record['train_loss']:.4f}"]
        if "val_accuracy" in record:
            parts += [f"val loss {record['val_loss']:.4f}", f"val accuracy {record['val_accuracy']:.3f}"]
        log("  " + ", ".join(parts))
        if self.acc.trackers:
            self.acc.log({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=record["epoch"])

    # -- checkpoints -------------------------------------------------------------------------------
    def checkpoint(self, optimizer, scheduler) -> None:
        """Write RUN_DIR/checkpoint atomically (main process), then let every process go on."""
        acc = self.acc
        if acc.is_main_process and self.write_checkpoints:
            ckpt = self.run_dir / CHECKPOINT
            model = acc.unwrap_model(self.model)
            weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
            with atomic_dir(ckpt, replace=True) as tmp:
                save_file(weights, str(tmp / "weights.safetensors"))
                if self.state.best_epoch == self.state.global_epoch:  # this epoch is the best so far
                    save_file(weights, str(tmp / "best.safetensors"))
                elif (ckpt / "best.safetensors").is_file():
                    shutil.copy2(ckpt / "best.safetensors", tmp / "best.safetensors")
                if optimizer is not None:
                    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
                               tmp / "optimizer.pt")
                atomic_write_json(tmp / "state.json", self.state.to_dict())
        acc.wait_for_everyone()

    def resume(self) -> None:
        """Continue from RUN_DIR/checkpoint: its state, and its weights loaded into the model."""
        ckpt = self.run_dir / CHECKPOINT
        if (ckpt / "state.json").is_file():
            self.state = RunState(**json.loads((ckpt / "state.json").read_text()))
            self.model.load_state_dict(load_file(str(ckpt / "weights.safetensors")))

    def _load_optimizer(self, optimizer, scheduler) -> None:
        path = self.run_dir / CHECKPOINT / "optimizer.pt"
        if not path.is_file():
            raise HeadstartError(f"checkpoint {path.parent} has no optimizer state; the run cannot be resumed exactly")
        saved = torch.load(path, map_location="cpu", weights_only=True)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])


def finish(run_dir: Path, trainer: Trainer, info: dict[str, Any], metrics: dict[str, Any]) -> Run:
    """The best epoch's weights become the run; the checkpoint folder goes."""
    acc = trainer.acc
    model = acc.unwrap_model(trainer.model).cpu().to(memory_format=torch.contiguous_format).eval()
    best = run_dir / CHECKPOINT / "best.safetensors"
    acc.wait_for_everyone()
    if best.is_file() and len(trainer.val_idx):
        model.load_state_dict(load_file(str(best)))
    if acc.trackers:
        acc.end_training()
    run = Run(dir=run_dir, card=trainer.card, head=HeadSpec.from_dict(trainer.cfg.head),
              classes=trainer.samples.classes, body_id=body_fingerprint(model), model=model, info=info,
              metrics=metrics)
    if acc.is_main_process:
        run.save_in_place()
        shutil.rmtree(run_dir / CHECKPOINT, ignore_errors=True)
    acc.wait_for_everyone()
    return run


def data_record(samples: ImageSamples, skip_bad_files: bool) -> dict[str, Any]:
    return {"source": samples.source, "fingerprint": samples.fingerprint(), "n": len(samples),
            "classes": list(samples.classes), "skip_bad_files": skip_bad_files}


def start_record(card: ModelCard, samples: ImageSamples, cfg: TrainConfig, reason: str,
                 skip_bad_files: bool = False, text_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """headstart.json of a run in progress: enough to check and continue it with --resume."""
    return ({"text": text_info} if text_info else {}) | {"format": RUN_FORMAT, "status": "training", "headstart": __version__, "task": "classify",
            "card": card.to_dict(), "head": cfg.head, "classes": list(samples.classes),
            "preprocessing": card.preprocessing.to_dict(), "strategy": cfg.strategy, "strategy_reason": reason,
            "config": cfg.to_dict(), "data": data_record(samples, skip_bad_files),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S")}


