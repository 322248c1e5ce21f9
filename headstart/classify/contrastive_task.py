"""--strategy contrastive on the engine (what it is, its defaults and when auto takes it: classify.contrastive).

  pairs phase   each step takes a class-balanced batch of labelled texts through the encoder once and uses
                every pair in it: a same-class pair's cosine similarity is pulled to 1, an other-class pair's
                to 0 (squared error, the two kinds weighted equally). A batch of B texts gives B(B-1)/2 pairs
                for B forward passes, where SetFit passes both texts of each pair: the budget is in steps,
                never all O(N^2) pairs. Each validation embeds the training and validation texts with the
                encoder as it is, fits the head on the training ones (headstart.probe) and scores the
                validation ones, and keeps that head: every epoch's weights are a whole classifier, and the
                best of them is the run.
  head phase    the head fitted once more on the last encoder's embeddings.

Batches are drawn from (seed, epoch): each class gives the same number of texts to a batch (a class with
thousands of texts as many as one with 8), each class's texts in a shuffled cycle, so that every text is
used evenly. A class needs two training texts to form a same-class pair (checked before any work).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..console import log
from ..data.unlabelled import Unlabelled
from ..engine import PhaseData, Validation
from ..errors import HeadstartError
from ..features import run_text_body
from ..heads import HeadSpec
from ..probe import HeadTraining, balanced_accuracy, train_head
from ..strategies import Phase
from ..text.inputs import Tokenized, collate
from .contrastive import batch_shape, steps_per_epoch
from .task import ClassificationTask


def pair_loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Every pair of the batch's embeddings `z` (B, D) with classes `y`: the mean squared error of a
    same-class pair's cosine similarity against 1 and of an other-class pair's against 0, each kind's mean
    counting half."""
    z = F.normalize(z.float(), dim=-1)
    s = z @ z.t()
    same = (y[:, None] == y[None, :]).float()
    off = 1.0 - torch.eye(len(y), device=z.device)
    pos, neg = same * off, 1.0 - same
    loss = z.new_zeros(())
    kinds = [(pos, 1.0), (neg, 0.0)]
    present = [(m, t) for m, t in kinds if m.sum() > 0]
    for m, target in present:
        loss = loss + ((s - target) ** 2 * m).sum() / m.sum()
    return loss / max(1, len(present))


def class_balanced_batches(labels: np.ndarray, batch: int, steps: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`steps` batches of indices into `labels`: each holds `per` texts of each of `k` classes (all classes
    when they fit, at least two texts of each, so that it has same-class pairs), every class's texts taken
    in a shuffled cycle."""
    classes = np.unique(labels)
    per, k = batch_shape(len(classes), batch)
    cycles = {int(c): np.flatnonzero(labels == c) for c in classes}
    order = {c: rng.permutation(ix) for c, ix in cycles.items()}
    pos = dict.fromkeys(cycles, 0)

    def take(c: int, n: int) -> list[int]:
        out = []
        for _ in range(min(n, len(cycles[c]))):
            if pos[c] == len(order[c]):
                order[c], pos[c] = rng.permutation(cycles[c]), 0
            out.append(int(order[c][pos[c]]))
            pos[c] += 1
        return out

    batches = []
    for _ in range(steps):
        chosen = classes if k == len(classes) else rng.choice(classes, k, replace=False)
        batches.append(np.asarray([i for c in chosen for i in take(int(c), per)]))
    return batches


class _Embedder(nn.Module):
    """The model as the engine wraps it in a pairs phase: forward(ids) is the encoder's pooled embedding
    (under DDP, gradients are averaged through this forward)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(ids)


class ContrastiveTask(ClassificationTask):
    """Texts through a transformer encoder: the pairs phase, then the head on the tuned embeddings."""

    def __init__(self, *args: Any, unlabelled: tuple[Unlabelled, str] | None = None, **kwargs: Any) -> None:
        """`unlabelled`: U's texts and the head method (headstart.adapt) by which the last head learns from their
        tuned embeddings too."""
        super().__init__(*args, **kwargs)
        if self.tokens is None:
            raise HeadstartError("--strategy contrastive tunes a transformer encoder on texts; images have no pairs "
                                 "phase: choose another strategy")
        self.phase: Phase | None = None
        self._embedder = _Embedder(self.model)
        self.unlabelled = unlabelled
        self.adapted: dict[str, Any] = {}  # metrics["adapt"] of the head that learned from U

    # -- the pairs phase ------------------------------------------------------------------------------------
    def _pairs(self) -> bool:
        return self.phase is not None and self.phase.objective == "pairs"

    def trained_module(self) -> nn.Module:
        return self._embedder if self._pairs() else self.model

    def start_phase(self, index: int, phase: Phase, of: int, acc) -> PhaseData:
        self.phase = phase
        data = super().start_phase(index, phase, of, acc)
        if not self._pairs():
            return data
        for p in self.model.head.parameters():  # only the encoder learns from pairs; the head is fitted
            p.requires_grad_(False)
        batch = min(self.cfg.batch_size, len(self.train_idx))
        data.steps_per_epoch = steps_per_epoch(len(self.train_idx), batch)
        per, k = batch_shape(len(self.samples.classes), batch)
        data.info.update(pairs_per_step=per * k * (per * k - 1) // 2, steps_per_epoch=data.steps_per_epoch)
        return data

    def batches(self, data: PhaseData, global_epoch: int):
        if not self._pairs():
            return super().batches(data, global_epoch)
        labels = self.samples.labels[self.train_idx]
        rng = np.random.default_rng([self.cfg.seed, global_epoch, 7])
        batch = min(self.cfg.batch_size, len(self.train_idx))
        return [self._pad([(self.tokens.ids[self.train_idx[i]], int(labels[i])) for i in ix])  # type: ignore[union-attr]
                for ix in class_balanced_batches(labels, batch, data.steps_per_epoch, rng)]

    def _pad(self, rows: list[tuple[list[int], int]]) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.tokens is not None
        return collate(self.tokens.pad_id, 1, self.tokens.max_length)(rows)

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        if not self._pairs():
            return super().loss(model, batch)
        ids, labels = batch
        return pair_loss(model(ids.to(self.device)), labels.to(self.device)), len(labels)

    def validate(self, model: nn.Module, data: PhaseData) -> Validation:
        return self._fit_head() if self._pairs() else super().validate(model, data)

    # -- the head on the tuned embeddings ---------------------------------------------------------------------
    def before_head_phase(self) -> None:
        self.body_images = 0  # the pretrained encoder's cached features are not what the head is fitted on

    def fit_head(self) -> Validation:
        return self._fit_head(self.unlabelled)

    def embed(self, idx: np.ndarray | None = None, tokens: Tokenized | None = None) -> np.ndarray:
        """The encoder's pooled embeddings of texts `idx` (or of other `tokens`), as it is now (features.run_text_body:
        in eval mode, shortest texts first); the model's mode is as it was afterwards."""
        assert self.tokens is not None
        tokens = tokens if tokens is not None else self.tokens.subset(idx)  # type: ignore[arg-type]
        was = self.model.training
        out = np.empty((len(tokens), self.card.num_features), np.float32)
        run_text_body(self.model.body, tokens, out, self.device)
        self.model.train(was)
        return out

    def _fit_head(self, unlabelled: tuple[Unlabelled, str] | None = None) -> Validation:
        """The head fitted on the training texts' tuned embeddings (and with `unlabelled`, U's: classify.unlabelled)
        and kept in the model, scored on the validation texts'."""
        tr, va, cfg, y = self.train_idx, self.val_idx, self.cfg, self.samples.labels
        x_tr, x_va = self.embed(tr), self.embed(va) if len(va) else None
        spec, k = HeadSpec.from_dict(cfg.head), len(self.samples.classes)
        training = HeadTraining(class_balance=cfg.class_balance, seed=cfg.seed, c=cfg.head_c)
        result = train_head(spec, x_tr, y[tr], x_va, y[va] if len(va) else None, k, training)
        weights = result.weights
        if unlabelled is not None:
            weights, self.adapted = self._learn_from(unlabelled, spec, x_tr, y[tr], k, training, result)
        device = next(self.model.head.parameters()).device
        self.model.head.load_state_dict({k: torch.from_numpy(v).to(device) for k, v in weights.items()})
        if x_va is None:  # C was chosen by cross-validation on texts the encoder was tuned on: no honest figure
            return Validation({"val_loss": None, "head_c": result.c, "val_accuracy": None,
                               "val_balanced_accuracy": None}, None)
        if unlabelled is not None:  # the head that learned from U, scored
            return self._score(x_va, y[va], result.c)
        record = {"val_loss": result.val_loss, "head_c": result.c, "val_accuracy": result.val_accuracy,
                  "val_balanced_accuracy": result.val_balanced_accuracy}
        score = result.val_balanced_accuracy if cfg.class_balance else result.val_accuracy
        return Validation(record, self._key(score, result.val_loss), result.predict(x_va))

    def _learn_from(self, unlabelled: tuple[Unlabelled, str], spec: HeadSpec, x: np.ndarray, y: np.ndarray, k: int,
                    training: HeadTraining, plain: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        from ..text.inputs import Tokenizer, card_model_dir
        from .unlabelled import head_from

        u, method = unlabelled
        assert self.tokens is not None
        t0 = time.perf_counter()
        tokens = Tokenizer(self.card.preprocessing, model_dir=card_model_dir(self.card))(u.items, self.tokens.max_length)
        xu = self.embed(tokens=tokens)
        log(f"adapt: {len(u.items):,} unlabelled texts through the tuned encoder in {time.perf_counter() - t0:.1f}s")
        weights, record = head_from(spec, x, y, xu, k, training, method, plain)
        log(f"adapt     {record['method']}: {record['reason']}")
        return weights, record | {"seconds": round(time.perf_counter() - t0, 2)}

    def _score(self, x: np.ndarray, y: np.ndarray, c: float) -> Validation:
        with torch.no_grad():
            logits = self.model.head(torch.from_numpy(x).to(next(self.model.head.parameters()).device)).float().cpu()
        loss = float(F.cross_entropy(logits, torch.as_tensor(y)))
        pred = logits.argmax(1).numpy()
        record = {"val_loss": loss, "head_c": c, "val_accuracy": float((pred == y).mean()),
                  "val_balanced_accuracy": balanced_accuracy(pred, y)}
        score = record["val_balanced_accuracy" if self.cfg.class_balance else "val_accuracy"]
        return Validation(record, self._key(score, loss), pred)
