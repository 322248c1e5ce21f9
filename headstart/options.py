"""The options of `fit`, grouped by what they apply to; the CLI maps its flags onto them, and the
Python API takes them as objects or as keyword arguments (each name belongs to one group).

  TrainOptions    training, for every task: strategy, epochs, learning rates, batches, regularisation,
                  augmentation, precision, seed, validation split
  HeadOptions     a classifier's head and its fit: head kind, width, dropout, --head-c, class balance,
                  auto's --budget
  DetectOptions   a detector's: which one, input sizes, validation frequency, head-phase epochs
  SetupOptions    where and how it runs: architecture, cache, bad files, --out, downloads, device,
                  workers, tracker
  TextOptions     text DATA's columns and word-vector networks (headstart.text.options)

None means "the task's default" (for example --lr: 1e-3 for a classifier, 0.01 for a detector). An
option of a group that does not apply to the task at hand is refused in one line (refuse_other_task).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import HeadstartError
from .text.options import TextOptions


@dataclass(frozen=True)
class TrainOptions:
    strategy: str = "auto"
    epochs: int | None = None
    lr: float | None = None
    body_lr_mult: float | None = None
    layer_decay: float | None = None
    l2sp: float = 0.0
    unfreeze_every: int | None = None
    weight_decay: float | None = None
    batch_size: int | None = None
    accumulate: int = 1
    warmup: float = 0.1
    patience: int | None = None
    augment: str | None = None
    bn: str = "frozen"
    precision: str = "auto"
    seed: int = 0
    val_split: float = 0.2
    clip_grad: float | None = None


@dataclass(frozen=True)
class HeadOptions:
    head: str = "linear"
    hidden: int = 512
    dropout: float = 0.0
    head_c: float | None = None
    class_balance: bool = True
    budget: float | None = None


@dataclass(frozen=True)
class DetectOptions:
    detector: str = "auto"
    input_size: int | None = None
    max_size: int | None = None
    eval_every: int | None = None
    head_epochs: int | None = None


@dataclass(frozen=True)
class SetupOptions:
    arch: str | None = None
    cache_dir: str | Path | None = None
    no_cache: bool = False
    skip_bad_files: bool = False
    overwrite: bool = False
    allow_download: bool = False
    device: str | None = None
    extract_batch_size: int | None = None
    num_workers: int | None = None
    tracker: str | None = None


GROUPS: dict[str, type] = {"train": TrainOptions, "head": HeadOptions, "detect": DetectOptions, "setup": SetupOptions}
NAMES: dict[str, str] = {f.name: group for group, cls in GROUPS.items() for f in fields(cls)}


@dataclass(frozen=True)
class FitOptions:
    """Every option of a fit, by group."""

    train: TrainOptions = field(default_factory=TrainOptions)
    head: HeadOptions = field(default_factory=HeadOptions)
    detect: DetectOptions = field(default_factory=DetectOptions)
    setup: SetupOptions = field(default_factory=SetupOptions)
    text: TextOptions = field(default_factory=TextOptions)

    @classmethod
    def of(cls, options: dict[str, Any], where: str = "fit()", **objects: Any) -> "FitOptions":
        """The option objects given (train=, head=, detect=, setup=, text=; None: defaults) with single
        options by name laid over them."""
        opts = cls(**{k: v for k, v in objects.items() if v is not None})
        by_group: dict[str, dict[str, Any]] = {}
        for name, value in options.items():
            group = NAMES.get(name)
            if group is None:
                raise HeadstartError(f"{where} got an unknown option '{name}'; the options are "
                                     f"{', '.join(sorted(NAMES))} (headstart.options)")
            by_group.setdefault(group, {})[name] = value
        return replace(opts, **{g: replace(getattr(opts, g), **kw) for g, kw in by_group.items()})


# What does not apply to a task, and why (one line, before any work).
NOT_FOR = {
    "detect": ("head", "a detector has no classification head on features and its auto strategy is not measured"),
    "classify": ("detect", "a classifier's head on cached features is one exact fit, and these are the detector's"),
}


def refuse_other_task(task: str, opts: FitOptions) -> None:
    """Options of a group that does not apply to `task` (changed from their defaults) end in one line
    naming them and the task."""
    group, why = NOT_FOR[task]
    given, default = getattr(opts, group), GROUPS[group]()
    named = ["--no-class-balance" if f.name == "class_balance" else f"--{f.name.replace('_', '-')}"
             for f in fields(given) if getattr(given, f.name) != getattr(default, f.name)]
    if task == "detect" and opts.text != TextOptions():
        named.append("text options (--text-column, ...)")
    if named:
        words = "detection" if task == "detect" else "classification"
        raise HeadstartError(f"{', '.join(named)} {'do' if len(named) > 1 else 'does'} not apply to {words} ({why}); "
                             f"leave {'them' if len(named) > 1 else 'it'} out")
