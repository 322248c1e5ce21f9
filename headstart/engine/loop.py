"""The one training loop, read top to bottom.

    for each phase of the strategy (headstart.strategies.plan):
        head-only phase on cached features, where the task fits its head that way (one exact fit)
        or else:
            freeze all but the head and the phase's top body groups; BatchNorm per --bn
            parameter groups (body LR multiplier, layer decay, no decay on biases / under L2-SP),
            AdamW or SGD, warm-up + cosine
            epochs: the task's batches -> its loss (+ L2-SP) -> backward, clip, step; validation
            every --eval-every epochs; the best validation is kept; patience in the last phase;
            an atomic checkpoint after every epoch and phase
    the best validation's weights are the run's

A task (image or text classification, detection, your own module) gives the engine only its model,
its batches, its loss and its validation score (`Task`). Hugging Face Accelerate owns the device,
mixed precision, gradient accumulation, DDP and the trackers; the loop never asks how many
processes run it. Every epoch's randomness is derived from (seed, epoch) and every epoch ends in a
checkpoint, so a killed run resumes at the same phase and epoch, and ends with the same weights as
one that was never interrupted.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager, nullcontext
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..console import log, progress
from ..errors import HeadstartError
from ..runtime import release_free_memory
from ..strategies import L2SP, Phase, Strategy, param_groups, plan, set_modes, set_trainable, warmup_cosine
from .accelerator import epoch_seed, seed_everything
from .checkpoint import Checkpoint
from .config import TrainConfig
from .state import RunState


@contextmanager
def evaluating(model: nn.Module, acc):
    """Validation's setting: `model` (wrapped or not) in eval mode, without gradients, under the run's
    autocast; every module's mode is as it was afterwards."""
    inner = acc.unwrap_model(model)
    was = {m: m.training for m in inner.modules()}
    inner.eval()
    try:
        with torch.no_grad(), acc.autocast():
            yield
    finally:
        for m, t in was.items():
            m.training = t


EXTRA = "_extra."  # a checkpoint's names for the task's extra modules' tensors (Task.extra_modules)


class Diverged(HeadstartError):
    """The loss became infinite or NaN; `where` says so in a few words (auto leaves a trial that diverged out)."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(message)
        self.where = where or message


@dataclass
class Validation:
    """A task's validation: what goes into the epoch's record, the key that orders validations
    (higher is better, compared as a tuple) and, where the task has them, the predicted classes."""

    record: dict[str, Any]
    key: tuple[float, ...] | None
    predictions: np.ndarray | None = None


@dataclass
class PhaseData:
    """What a task prepares for a phase that runs the loop: its training batches (a loader, or anything
    `Task.batches` turns into an epoch's batches) and its validation loader (None: the task validates
    by itself)."""

    train: Any
    val: Any = None
    steps_per_epoch: int = 1
    info: dict[str, Any] = field(default_factory=dict)  # added to the phase's record
    workers: int = 0  # loader processes the phase forks (memory is handed back to the system first)


class Task:
    """What a task gives the engine; subclass it (headstart.classify.task.ClassificationTask,
    headstart.detection.train.DetectionTask, or your own).

    model          the whole network, with its body's parameters under `body_prefix`
    groups         the body's depth groups, from the input to the output (parameter names under the body)
    n_val          the number of validation examples (0: no validation, the last epoch is the run)
    head_on_features
                   a phase with a frozen body fits the head on cached features (fit_head) instead of running
                   the loop
    """

    model: nn.Module
    groups: list[list[str]]
    body_prefix: str = "body."
    n_val: int = 0
    head_on_features: bool = False
    epoch_seed_base: int = 1_000_003  # an epoch's seed: seed * base + epoch
    optimizer_options: ClassVar[dict[str, Any]] = {}  # for the optimizer's constructor, e.g. {"fused": True}

    def fit_head(self) -> Validation:
        raise NotImplementedError

    def start_phase(self, index: int, phase: Phase, of: int, acc) -> PhaseData:
        """Phase `index` of `of` is about to run the loop: its parameters are frozen or not already."""
        raise NotImplementedError

    def batches(self, data: PhaseData, global_epoch: int) -> Iterable:
        """An epoch's batches; the engine has seeded every generator from (seed, epoch) before."""
        return data.train

    def extra_modules(self) -> dict[str, nn.Module]:
        """Modules the task trains beside the model (a domain discriminator): their parameters train at the
        head's rate, and they are checkpointed and resumed with the run, but are not part of its weights."""
        return {}

    def trained_module(self) -> nn.Module:
        """The module the engine wraps (DDP, precision) and hands to `loss`: the model, or a module holding it
        whose forward computes the loss (under DDP, gradients are averaged only through the wrapper's forward)."""
        return self.model

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        """The batch's loss (a scalar) through `model` (trained_module(), wrapped for DDP where it runs), and its
        number of examples."""
        raise NotImplementedError

    def validate(self, model: nn.Module, data: PhaseData) -> Validation:
        raise NotImplementedError

    def describe(self, record: dict[str, Any]) -> str:
        """The validation part of an epoch's log line."""
        return ""

    def before_head_phase(self) -> None:
        """Before a head phase's clock starts (the features' first extraction, or a cache hit)."""

    def phase_info(self) -> dict[str, Any]:
        """Added to a phase's record when it ends."""
        return {}


class Callback:
    """Hooks for Python users (and auto's trials): `engine.state`, `engine.task` and `engine.val_predictions`
    are there to read. Raising an exception stops the run where it is (its last checkpoint stays)."""

    def on_step_end(self, engine: "Engine", loss: torch.Tensor) -> None:
        pass

    def on_epoch_end(self, engine: "Engine", record: dict[str, Any]) -> None:
        pass

    def on_phase_end(self, engine: "Engine", phase: dict[str, Any]) -> None:
        pass


class Engine:
    """One run of a strategy over a task; `run()` goes from the state it is given to the end."""

    def __init__(self, run_dir: Path, task: Task, cfg: TrainConfig, accelerator, *, checkpoints: bool = True,
                 verbose: bool = True, callbacks: Sequence[Callback] = ()) -> None:
        """checkpoints=False and verbose=False serve throwaway runs (the advisor's from-scratch baselines):
        nothing is written and nothing is said per epoch."""
        self.run_dir, self.task, self.cfg, self.acc = run_dir, task, cfg, accelerator
        self.checkpoints, self.verbose, self.callbacks = checkpoints, verbose, list(callbacks)
        self.ckpt = Checkpoint(run_dir)
        self.model = task.model
        self.state = RunState()
        self.val_predictions: np.ndarray | None = None
        self.phases = plan(Strategy.parse(cfg.strategy), len(task.groups), cfg.epochs, cfg.head_epochs,
                           cfg.unfreeze_every)
        self.l2sp = L2SP(self.model, cfg.l2sp, task.body_prefix) if cfg.l2sp else None  # anchored at the start

    # -- the run -------------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except HeadstartError:  # diverged, out of memory, a disk that filled up: a run with nothing to resume goes
            self._kept()
            raise

    def _run(self) -> None:
        for i, phase in enumerate(self.phases):
            if i < self.state.phase:
                continue
            if self.state.epoch == 0:  # a new phase (a resumed one keeps its patience)
                self.state.since_best, self.state.phase_best_key = 0, None
            if len(self.state.phases) <= i:  # its record (a checkpoint of headstart 0.2 wrote it at the phase's end)
                self.state.phases.append({"phase": i, "name": phase.name, "trainable_groups": phase.trainable,
                                          "groups": len(self.task.groups), "epochs_planned": phase.epochs,
                                          "epochs_run": 0, "from_cache": False, "seconds": 0.0})
            head = phase.trainable == 0 and self.task.head_on_features
            if head:
                self.task.before_head_phase()
            t0 = time.perf_counter()
            if head:
                self._head_phase(i)
            else:
                self._body_phase(i, phase)
            record = self.state.phases[-1]
            record.update(self.task.phase_info(), stopped_early=self.state.stopped_early)
            if head:
                record["seconds"] = round(time.perf_counter() - t0, 3)
            self.state.phase, self.state.epoch = i + 1, 0
            self.checkpoint(None, None)
            for c in self.callbacks:
                c.on_phase_end(self, record)
            if self.state.stopped_early:
                break

    def _head_phase(self, index: int) -> None:
        """Head only, fitted by the task on cached features (no body forward pass), scored on validation."""
        v = self.task.fit_head()
        s = self.state
        s.global_epoch += 1
        s.epoch = 1
        record = {"phase": index, "phase_epoch": 1, "epoch": s.global_epoch, "train_loss": None, **v.record,
                  "head_only": True}
        s.history.append(record)
        s.phases[-1].update(epochs_run=1, from_cache=True)
        self._consider_best(v.key)
        self.val_predictions = v.predictions
        for c in self.callbacks:
            c.on_epoch_end(self, record)

    def start_phase(self, index: int, phase: Phase):
        """Freeze, let the task prepare, build the optimizer and its schedule, wrap them (Accelerate):
        returns (the task's PhaseData, the wrapped model, optimizer, scheduler)."""
        cfg, acc, task = self.cfg, self.acc, self.task
        set_trainable(self.model, task.groups, phase.trainable, task.body_prefix)
        set_modes(self.model, cfg.bn)
        data = task.start_phase(index, phase, len(self.phases), acc)
        groups = param_groups(self.model, task.groups, phase.trainable, cfg.lr, cfg.body_lr_mult, cfg.layer_decay,
                              cfg.weight_decay, cfg.l2sp, task.body_prefix)
        groups += [{"params": list(m.parameters()), "lr": cfg.lr, "weight_decay": cfg.weight_decay, "name": name}
                   for name, m in task.extra_modules().items()]
        optimizer: torch.optim.Optimizer
        if cfg.optimizer == "sgd":
            optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, **task.optimizer_options)
        else:
            optimizer = torch.optim.AdamW(groups, **task.optimizer_options)
        # optimizer steps: Accelerate also steps on a last, incomplete accumulation of an epoch
        steps = phase.epochs * max(1, math.ceil(data.steps_per_epoch / cfg.accumulate))
        scheduler = warmup_cosine(optimizer, steps, int(cfg.warmup * steps))
        wrapped, optimizer, scheduler = acc.prepare(task.trained_module(), optimizer, scheduler)
        return data, wrapped, optimizer, scheduler

    def _body_phase(self, index: int, phase: Phase) -> None:
        cfg, acc, task, s = self.cfg, self.acc, self.task, self.state
        data, wrapped, optimizer, scheduler = self.start_phase(index, phase)
        s.phases[-1].update(data.info)
        if s.epoch > 0:  # resuming inside this phase
            self.ckpt.load_optimizer(optimizer, scheduler)
        if data.workers:
            release_free_memory()  # the loader's workers fork at the first epoch
        last_phase = index == len(self.phases) - 1
        for epoch in range(s.epoch, phase.epochs):
            seed_everything(epoch_seed(cfg.seed, s.global_epoch, task.epoch_seed_base))
            batches = task.batches(data, s.global_epoch)
            set_modes(self.model, cfg.bn)
            t0 = time.perf_counter()
            try:
                train_loss, seen = self.train_epoch(wrapped, optimizer, scheduler, batches, phase, epoch,
                                                    data.steps_per_epoch)
            except torch.OutOfMemoryError:
                b = cfg.batch_size
                raise HeadstartError(
                    f"out of {acc.device.type.upper()} memory in phase '{phase.name}' with --batch-size {b}; try "
                    f"--batch-size {max(1, b // 2)} --accumulate {cfg.accumulate * 2} (the same effective batch); "
                    f"{self._kept()}"
                ) from None
            seconds = time.perf_counter() - t0
            s.body_seconds += seconds
            s.images += seen
            record: dict[str, Any] = {"phase": index, "phase_epoch": epoch + 1, "epoch": s.global_epoch + 1,
                                      "train_loss": train_loss, "lr": optimizer.param_groups[0]["lr"],
                                      "images_per_second": round(seen / seconds, 2)}
            validated = task.n_val > 0 and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == phase.epochs)
            v = task.validate(wrapped, data) if validated else None
            if v is not None:
                record.update(v.record)
                self.val_predictions = v.predictions
                set_modes(self.model, cfg.bn)
            s.history.append(record)
            s.epoch, s.global_epoch = epoch + 1, s.global_epoch + 1
            s.phases[-1].update(epochs_run=epoch + 1,
                                seconds=round(s.phases[-1]["seconds"] + time.perf_counter() - t0, 3))
            if v is not None:
                self._consider_best(v.key)
            if acc.is_main_process and self.verbose:
                self._log_epoch(record, f"{phase.name} {epoch + 1}/{phase.epochs}")
            # decided before the checkpoint, so that a run resumed from it stops where this one does
            s.stopped_early = bool(last_phase and v is not None and cfg.patience is not None
                                   and s.since_best >= cfg.patience)
            self.checkpoint(optimizer, scheduler)
            for c in self.callbacks:
                c.on_epoch_end(self, record)
            if s.stopped_early:
                break
        # Drop the DDP wrapper, the optimizer and the loaders: the next phase wraps anew, and loader workers
        # stop now (left to a later garbage collection, each run's took 5 s to stop, measured). A last phase
        # without workers (advise's throwaway runs) ends without the collection.
        if not last_phase or data.workers:
            acc.free_memory()

    def train_epoch(self, wrapped, optimizer, scheduler, batches, phase: Phase, epoch: int,
                    steps: int) -> tuple[float, int]:
        """One pass over `batches`: (mean training loss, examples seen), summed over every process."""
        acc, cfg = self.acc, self.cfg
        total, seen, step = 0.0, 0, 0
        shown = progress(f"{phase.name} epoch {epoch + 1}/{phase.epochs}", steps) if self.verbose else \
            nullcontext(lambda n: None)
        with shown as advance:
            for batch in batches:
                with acc.accumulate(wrapped):
                    with acc.autocast():
                        loss, n = self.task.loss(wrapped, batch)
                        if self.l2sp is not None:
                            loss = loss + self.l2sp(self.model)
                    if not torch.isfinite(loss):
                        self._diverged(loss.item(), phase, epoch, step, optimizer)
                    acc.backward(loss)
                    if cfg.clip_grad and acc.sync_gradients:  # a fresh head on small data can blow up at first
                        acc.clip_grad_norm_([p for p in wrapped.parameters() if p.grad is not None], cfg.clip_grad)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                for c in self.callbacks:
                    c.on_step_end(self, loss)
                total += float(loss.detach()) * n
                seen += n
                step += 1
                advance(1)
        seen_all = int(acc.reduce(torch.tensor(seen, device=acc.device), reduction="sum"))
        loss_all = float(acc.reduce(torch.tensor(total, device=acc.device), reduction="sum"))
        return loss_all / max(1, seen_all), seen_all

    def _consider_best(self, key: tuple[float, ...] | None) -> None:
        """Track the best validation of the run (its weights are kept) and of the phase (for patience):
        an epoch that only ties the best so far (say, lp-ft's linear probe) does not replace it."""
        if key is None:
            return
        s = self.state
        k = [float(x) for x in key]
        if s.best_key is None or k > s.best_key:
            s.best_key, s.best_epoch = k, s.global_epoch
        if s.phase_best_key is None or k > s.phase_best_key:
            s.phase_best_key, s.since_best = k, 0
        else:
            s.since_best += 1

    def _kept(self) -> str:
        """What a run that failed keeps, and how to go again: its last good checkpoint; or, where no epoch had
        finished, nothing (the run's folder holds only its start and goes, so that a new fit may have --out)."""
        if self.ckpt.exists():
            return (f"the last good checkpoint ({self.ckpt.dir}, after epoch {self.state.global_epoch}) is intact; "
                    "fit again with --overwrite to start over")
        if self.checkpoints and self.acc.is_main_process:
            import shutil

            shutil.rmtree(self.run_dir, ignore_errors=True)
        return "no epoch had finished, so nothing was kept"

    def _diverged(self, value: float, phase: Phase, epoch: int, step: int, optimizer) -> None:
        lr = max(g["lr"] for g in optimizer.param_groups)
        where = (f"the loss became {value} in phase '{phase.name}', epoch {epoch + 1}, step {step + 1} (learning rate "
                 f"{lr:.2g})")
        raise Diverged(f"{where}; lower --lr (try --lr {self.cfg.lr / 10:.2g}); training stopped and {self._kept()}",
                       where)

    def _log_epoch(self, record: dict[str, Any], where: str) -> None:
        log(f"  {where}: train loss {record['train_loss']:.4f}" + self.task.describe(record))
        if self.acc.trackers:
            self.acc.log({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=record["epoch"])

    # -- checkpoints and the end -----------------------------------------------------------------------
    def checkpoint(self, optimizer, scheduler) -> None:
        """Write RUN_DIR/checkpoint atomically (main process), then let every process go on."""
        acc, s = self.acc, self.state
        if acc.is_main_process and self.checkpoints:
            model = acc.unwrap_model(self.model)
            weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
            weights |= {f"{EXTRA}{name}.{k}": v.detach().contiguous().cpu()
                        for name, m in self.task.extra_modules().items() for k, v in m.state_dict().items()}
            self.ckpt.save(weights, s.best_epoch == s.global_epoch and s.best_epoch > 0, s.to_dict(), optimizer,
                           scheduler)
        acc.wait_for_everyone()

    def resume(self) -> None:
        """Continue from RUN_DIR/checkpoint: its state, and its weights loaded into the model."""
        if self.ckpt.exists():
            self.state = RunState.from_dict(self.ckpt.state())
            weights = self.ckpt.weights()
            self.model.load_state_dict(self._model_weights(weights))
            for name, m in self.task.extra_modules().items():
                m.load_state_dict({k[len(f"{EXTRA}{name}."):]: v for k, v in weights.items()
                                   if k.startswith(f"{EXTRA}{name}.")})

    @staticmethod
    def _model_weights(weights: dict[str, Any]) -> dict[str, Any]:
        """A checkpoint's weights without the task's extra modules'."""
        return {k: v for k, v in weights.items() if not k.startswith(EXTRA)}

    def best_model(self) -> nn.Module:
        """The model with the best validation's weights (the last epoch's without validation), on the CPU in
        eval mode; the trackers are closed."""
        acc = self.acc
        model = acc.unwrap_model(self.model).cpu().to(memory_format=torch.contiguous_format).eval()
        acc.wait_for_everyone()
        best = self.ckpt.best() if self.task.n_val else None
        if best is not None:
            model.load_state_dict(self._model_weights(best))
        if acc.trackers:
            acc.end_training()
        return model

    def close(self) -> None:
        """After the run is written: the checkpoint goes."""
        if self.acc.is_main_process:
            self.ckpt.remove()
        self.acc.wait_for_everyone()
