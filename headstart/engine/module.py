"""Your own network through the engine: `fit_module` trains any `nn.Module` whose pretrained part is one
submodule (its "body") with the strategies fit uses (finetune, partial:N, gradual, lp-ft, ...), the same
freezing and BatchNorm policy, parameter groups, warm-up and schedule, precision, accumulation, L2-SP,
early stopping and best-epoch choice, trackers, checkpoints and exact resume, as Keras' `fit`, fastai's
`fine_tune` or a Lightning Trainer would. You give the data as PyTorch datasets of (input, target), and
optionally the preparation of a batch on the device, a loss, extra metrics and callbacks.

    import headstart
    from headstart.engine import Callback

    result = headstart.fit_module(net, train_set, val_set, body="backbone", strategy="lp-ft",
                                  preprocess=lambda x: (x - 0.5) / 0.25, epochs=10, out="runs/mine")
    result.model        # the network with the best validation epoch's weights
    result.history      # one record per epoch: train loss, val loss, val accuracy, your metrics
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import HeadstartError
from ..fileio import atomic_write_bytes, atomic_write_json
from ..strategies import Phase
from .accelerator import make_accelerator, seed_everything, start_trackers
from .config import TrainConfig
from .loop import Callback, Engine, PhaseData, Task, Validation, evaluating

Metric = Callable[[torch.Tensor, torch.Tensor], float]


@dataclass
class ModuleFit:
    """What fit_module returns: the trained network (best validation epoch's weights, CPU, eval mode), its
    epochs' records, the best epoch and the phases run."""

    model: nn.Module
    history: list[dict[str, Any]]
    best_epoch: int
    phases: list[dict[str, Any]]
    out: Path | None


class ModuleTask(Task):
    """A user's module on the engine: (input, target) batches, `loss(outputs, targets)`, validation by the
    loss, accuracy (for class logits) and the user's metrics."""

    def __init__(self, model: nn.Module, body: str, train: torch.utils.data.Dataset,
                 val: torch.utils.data.Dataset | None, cfg: TrainConfig, loss: Callable[..., torch.Tensor] | None,
                 preprocess: Callable[[torch.Tensor], torch.Tensor] | None, metrics: dict[str, Metric],
                 score: str | None, num_workers: int) -> None:
        from ..surgery import depth_groups

        try:
            module = model.get_submodule(body)
        except AttributeError:
            children = ", ".join(n for n, _ in model.named_children()) or "none"
            raise HeadstartError(f"body='{body}' is not a submodule of {type(model).__name__} (its children: "
                                 f"{children}); name the pretrained part the strategy freezes and unfreezes") from None
        self.model, self.body_prefix, self.groups = model, f"{body}.", depth_groups(module)
        if not self.groups:
            raise HeadstartError(f"body='{body}' has no parameters to train or freeze")
        self.train_set, self.val_set, self.cfg = train, val, cfg
        self.loss_fn = loss or nn.functional.cross_entropy
        self.classify = loss is None
        self.preprocess, self.metrics, self.num_workers = preprocess, metrics, num_workers
        self.score = score if score is not None else "accuracy" if self.classify else None
        if self.score is not None and self.score != "accuracy" and self.score not in metrics:
            raise HeadstartError(f"score='{self.score}' is not one of the metrics ({', '.join(metrics) or 'none'})")
        self.n_val = len(val) if val is not None else 0  # type: ignore[arg-type]  # map-style datasets have a length

    def start_phase(self, index: int, phase: Phase, of: int, acc) -> PhaseData:
        self.acc = acc
        batch = min(self.cfg.batch_size, len(self.train_set))  # type: ignore[arg-type]
        train = torch.utils.data.DataLoader(self.train_set, batch_size=batch, shuffle=True, drop_last=True,
                                            num_workers=self.num_workers, persistent_workers=self.num_workers > 0)
        val = torch.utils.data.DataLoader(self.val_set, batch_size=batch) if self.val_set is not None else None
        train, val = acc.prepare(train, val) if val is not None else (acc.prepare(train), None)
        return PhaseData(train, val, steps_per_epoch=len(self.train_set) // batch)  # type: ignore[arg-type]

    def batches(self, data: PhaseData, global_epoch: int):
        data.train.set_epoch(global_epoch)
        return data.train

    def _forward(self, model: nn.Module, x: Any) -> Any:
        x = x.to(self.acc.device) if isinstance(x, torch.Tensor) else x
        return model(self.preprocess(x) if self.preprocess is not None else x)

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        x, y = batch
        return self.loss_fn(self._forward(model, x), y), len(y)

    def validate(self, model: nn.Module, data: PhaseData) -> Validation:
        acc = self.acc
        outs, ys = [], []
        with evaluating(model, acc):
            for x, y in data.val:
                out, y = acc.gather_for_metrics((self._forward(model, x).float(), y))
                outs.append(out.cpu())
                ys.append(y.cpu())
        out, y = torch.cat(outs), torch.cat(ys)
        record: dict[str, Any] = {"val_loss": float(self.loss_fn(out, y))}
        if self.classify:
            record["val_accuracy"] = float((out.argmax(1) == y).float().mean())
        for name, fn in self.metrics.items():
            record[f"val_{name}"] = float(fn(out, y))
        key = (record[f"val_{self.score}"], -record["val_loss"]) if self.score else (-record["val_loss"],)
        return Validation(record, key, out.argmax(1).numpy() if self.classify else None)

    def describe(self, record: dict[str, Any]) -> str:
        return "".join(f", {k.replace('_', ' ')} {v:.4f}" for k, v in record.items()
                       if k.startswith("val_") and isinstance(v, float))


def fit_module(
    model: nn.Module,
    train: torch.utils.data.Dataset,
    val: torch.utils.data.Dataset | None = None,
    *,
    body: str = "body",
    strategy: str = "finetune",
    out: str | Path | None = None,
    resume: bool = False,
    loss: Callable[..., torch.Tensor] | None = None,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    metrics: dict[str, Metric] | None = None,
    score: str | None = None,
    callbacks: Sequence[Callback] = (),
    epochs: int = 15,
    head_epochs: int | None = None,
    tracker: str | None = None,
    device: str | None = None,
    num_workers: int = 0,
    **options: Any,
) -> ModuleFit:
    """Train `model` on `train` ((input, target) pairs) with a strategy, validating on `val` after every
    epoch and keeping the best epoch's weights.

    body          the submodule holding the pretrained part: the strategy freezes and unfreezes its depth
                  groups (headstart.surgery.depth_groups); everything else is the head
    strategy      finetune, partial:N, gradual, lp-ft, frozen-then-finetune, linear-probe (here the head
                  phases train by epochs: `head_epochs`, default `epochs`)
    loss          loss(outputs, targets) -> scalar (default cross-entropy on class logits, which also reports
                  val accuracy and picks the best epoch by it)
    preprocess    applied to each batch's inputs on the device (normalisation, resizing, ...)
    metrics       name -> fn(outputs, targets) over the whole validation set, recorded as val_<name>
    score         the metric that picks the best epoch and counts patience (default accuracy with the
                  default loss, else the validation loss)
    callbacks     headstart.engine.Callback: on_step_end, on_epoch_end, on_phase_end
    out           a folder for checkpoints (atomic, every epoch; `resume=True` continues a stopped run
                  exactly), model.safetensors and metrics.json
    options       any other field of headstart.engine.TrainConfig: lr, body_lr_mult, layer_decay, l2sp,
                  weight_decay, batch_size, accumulate, warmup, patience, bn, precision, seed, optimizer, ...
    """
    from ..runtime import pick_device

    t0 = time.perf_counter()
    cfg = TrainConfig(strategy=strategy, epochs=epochs, head_epochs=head_epochs or epochs, **options)
    run_dir = Path(out).expanduser() if out is not None else None
    if resume and (run_dir is None or not (run_dir / "checkpoint").is_dir()):
        raise HeadstartError(f"resume=True needs out= a folder with a checkpoint of a stopped fit_module; got {out}")
    dev = pick_device(device)
    acc = make_accelerator(cfg, run_dir or Path("."), tracker, cpu=dev.type == "cpu")
    if run_dir is not None and acc.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
    start_trackers(acc, cfg, tracker)
    seed_everything(cfg.seed)
    task = ModuleTask(model, body, train, val, cfg, loss, preprocess, dict(metrics or {}), score, num_workers)
    engine = Engine(run_dir or Path("."), task, cfg, acc, checkpoints=run_dir is not None, callbacks=callbacks)
    from ..strategies import Strategy

    Strategy.parse(strategy).check(len(task.groups), type(model).__name__)
    if resume:
        engine.resume()
    engine.run()
    s = engine.state
    best = engine.best_model()
    if run_dir is not None and acc.is_main_process:
        from safetensors.torch import save

        atomic_write_bytes(run_dir / "model.safetensors",
                           save({k: v.detach().contiguous() for k, v in best.state_dict().items()}))
        atomic_write_json(run_dir / "metrics.json", {
            "strategy": cfg.strategy, "config": cfg.to_dict(), "history": s.history, "phases": s.phases,
            "best_epoch": s.best_epoch, "stopped_early": s.stopped_early,
            "images_per_second": round(s.images / s.body_seconds, 2) if s.body_seconds else None,
            "total_seconds": round(time.perf_counter() - t0, 3)})
    if run_dir is not None:
        engine.close()
    return ModuleFit(best, s.history, s.best_epoch if s.best_epoch > 0 else s.global_epoch, s.phases, run_dir)

