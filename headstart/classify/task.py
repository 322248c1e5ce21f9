"""Image and text classification on the engine (headstart.engine): the task's model (a pretrained body
and a new head), its batches (augmented images decoded by loader workers, or token ids padded per
batch), its loss (class-balanced cross-entropy) and its validation score (balanced accuracy, or
accuracy, then the loss). A phase with a frozen body fits the head on cached features
(headstart.probe: one exact fit, its L2 strength by cross-validation), with no body forward pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..data.images import ImageSamples
from ..data.transforms import ImageLoader, LabelledImages, TrainLoader, normalize
from ..engine import Engine, PhaseData, Task, TrainConfig, Validation, make_accelerator, seed_everything
from ..engine.loop import evaluating
from ..engine.checkpoint import CHECKPOINT
from ..features import Features
from ..heads import HeadSpec
from ..probe import HeadTraining, class_weights, train_head
from ..run import RUN_FORMAT, Run, body_fingerprint
from ..runtime import default_workers
from ..strategies import Phase
from ..surgery import TransferModel, depth_groups
from ..text.inputs import LabelledTokens, Tokenized, collate
from ..zoo.card import ModelCard

__all__ = ["CHECKPOINT", "ClassificationTask", "TrainConfig", "finish", "make_accelerator", "seed_everything",
           "start_record"]


class ClassificationTask(Task):
    """Labelled images (or texts, with `tokens`) through a TransferModel."""

    head_on_features = True

    def __init__(self, card: ModelCard, samples: ImageSamples, train_idx: np.ndarray, val_idx: np.ndarray,
                 features: Callable[[], Features], cfg: TrainConfig, model: TransferModel,
                 num_workers: int | None = None, tokens: Tokenized | None = None) -> None:
        """`tokens` (text DATA): every sample's token ids; batches are padded per batch instead of decoded
        and augmented. `features`: the cached features of every sample, for a head-only phase."""
        self.card, self.samples, self.cfg, self.tokens = card, samples, cfg, tokens
        self.train_idx, self.val_idx, self.features = train_idx, val_idx, features
        self.model = model
        self.groups = depth_groups(model.body)
        self.n_val = len(val_idx)
        self.num_workers = num_workers
        weight = torch.as_tensor(class_weights(samples.labels[train_idx], len(samples.classes)), dtype=torch.float32)
        self.loss_fn = nn.CrossEntropyLoss(weight=weight if cfg.class_balance else None)
        self.device = torch.device("cpu")
        self.body_images = 0  # counted by a forward hook on the body, per phase
        model.body.register_forward_hook(lambda m, i, o: self._count(i[0]))

    def _count(self, x: torch.Tensor) -> None:
        self.body_images += int(x.shape[0])

    def phase_info(self) -> dict[str, Any]:
        n, self.body_images = self.body_images, 0
        return {"body_forward_images": n}

    def before_head_phase(self) -> None:
        self.features()  # the first extraction (or a cache hit) happens before the phase is counted
        self.body_images = 0

    def fit_head(self) -> Validation:
        """The head on the training split's cached features, scored on the validation split."""
        x, y = self.features().array, self.samples.labels
        tr, va, cfg = self.train_idx, self.val_idx, self.cfg
        result = train_head(
            HeadSpec.from_dict(cfg.head), x[tr], y[tr], x[va] if len(va) else None, y[va] if len(va) else None,
            len(self.samples.classes), HeadTraining(class_balance=cfg.class_balance, seed=cfg.seed, c=cfg.head_c))
        self.model.head.load_state_dict({k: torch.from_numpy(v) for k, v in result.weights.items()})
        record = {"val_loss": result.val_loss, "head_c": result.c, "val_accuracy": result.val_accuracy,
                  "val_balanced_accuracy": result.val_balanced_accuracy}
        return Validation(record, self._key(result.val_balanced_accuracy if cfg.class_balance else result.val_accuracy,
                                            result.val_loss), result.predict(x[va]) if len(va) else None)

    @staticmethod
    def _key(score: float | None, loss: float | None) -> tuple[float, float] | None:
        """The higher accuracy, and on equal accuracy the lower validation loss: with a handful of validation
        examples accuracies tie often."""
        if score is None:
            return None
        return score, -(loss if loss is not None and np.isfinite(loss) else np.inf)

    def start_phase(self, index: int, phase: Phase, of: int, acc) -> PhaseData:
        cfg, labels = self.cfg, self.samples.labels
        self.acc, self.device, self.body_images = acc, acc.device, 0
        collate_fn = None
        if self.tokens is not None:  # text: tokenized once, padded per batch; nothing to decode, so no workers
            train_set = LabelledTokens(self.tokens.subset(self.train_idx), labels[self.train_idx])
            val_set = LabelledTokens(self.tokens.subset(self.val_idx), labels[self.val_idx])
            collate_fn, workers = collate(self.tokens.pad_id, 8 if acc.device.type == "cuda" else 1,
                                          self.tokens.max_length), 0
        else:
            pre = self.card.preprocessing
            train_set = LabelledImages([self.samples.paths[i] for i in self.train_idx], labels[self.train_idx],
                                       TrainLoader(pre, cfg.augment), seed=cfg.seed)
            val_set = LabelledImages([self.samples.paths[i] for i in self.val_idx], labels[self.val_idx],
                                     ImageLoader(pre))
            workers = default_workers(acc.device) if self.num_workers is None else self.num_workers
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
        if self.tokens is None:
            self.model.to(memory_format=torch.channels_last)
        self.loss_fn.to(acc.device)
        train_loader, val_loader = acc.prepare(train_loader, val_loader)
        self.train_set = train_set
        return PhaseData(train_loader, val_loader, steps_per_epoch=len(train_set) // batch, workers=workers)

    def batches(self, data: PhaseData, global_epoch: int):
        data.train.set_epoch(global_epoch)
        self.train_set.set_epoch(global_epoch)
        return data.train

    def _input(self, inputs: torch.Tensor) -> torch.Tensor:
        """A batch as the network takes it: images normalized on the device, token ids moved there."""
        if self.tokens is not None:
            return inputs.to(self.device)
        return normalize(inputs, self.card.preprocessing, self.device)

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        inputs, labels = batch
        return self.loss_fn(model(self._input(inputs)), labels), len(labels)

    def validate(self, model: nn.Module, data: PhaseData) -> Validation:
        acc = self.acc
        preds, ys, losses = [], [], []
        weight = self.loss_fn.weight.to(acc.device) if self.loss_fn.weight is not None else None
        with evaluating(model, acc):
            for inputs, labels in data.val:
                logits = model(self._input(inputs)).float()
                loss = nn.functional.cross_entropy(logits, labels, reduction="none", weight=weight)
                p, y, lo = acc.gather_for_metrics((logits.argmax(1), labels, loss))
                preds.append(p.cpu())
                ys.append(y.cpu())
                losses.append(lo.cpu())
        pred, y = torch.cat(preds), torch.cat(ys)
        recalls = [float((pred[y == c] == c).float().mean()) for c in torch.unique(y)]
        record = {"val_loss": float(torch.cat(losses).mean()), "val_accuracy": float((pred == y).sum()) / len(y),
                  "val_balanced_accuracy": float(np.mean(recalls))}
        score = record["val_balanced_accuracy" if self.cfg.class_balance else "val_accuracy"]
        return Validation(record, self._key(score, record["val_loss"]), pred.numpy())

    def describe(self, record: dict[str, Any]) -> str:
        if "val_accuracy" not in record:
            return ""
        return f", val loss {record['val_loss']:.4f}, val accuracy {record['val_accuracy']:.3f}"


def finish(engine: Engine, info: dict[str, Any], metrics: dict[str, Any]) -> Run:
    """The best epoch's weights become the run; the checkpoint folder goes."""
    task: ClassificationTask = engine.task  # type: ignore[assignment]
    model = engine.best_model()
    run = Run(dir=engine.run_dir, card=task.card, head=HeadSpec.from_dict(engine.cfg.head),
              classes=task.samples.classes, body_id=body_fingerprint(model), model=model, info=info,
              metrics=metrics)
    if engine.acc.is_main_process:
        run.save_in_place()
    engine.close()
    return run


def data_record(samples: ImageSamples, skip_bad_files: bool) -> dict[str, Any]:
    return {"source": samples.source, "fingerprint": samples.fingerprint(), "n": len(samples),
            "classes": list(samples.classes), "skip_bad_files": skip_bad_files}


def start_record(card: ModelCard, samples: ImageSamples, cfg: TrainConfig, reason: str,
                 skip_bad_files: bool = False, text_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """headstart.json of a run in progress: enough to check and continue it with --resume."""
    return ({"text": text_info} if text_info else {}) | {
            "format": RUN_FORMAT, "status": "training", "headstart": __version__, "task": "classify",
            "card": card.to_dict(), "head": cfg.head, "classes": list(samples.classes),
            "preprocessing": card.preprocessing.to_dict(), "strategy": cfg.strategy, "strategy_reason": reason,
            "config": cfg.to_dict(), "data": data_record(samples, skip_bad_files),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S")}


