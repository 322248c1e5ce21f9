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
  AdaptOptions    unlabelled examples (--unlabelled) and how the head learns from them (--adapt)

None means "the task's default" (for example --lr: 1e-3 for a classifier, 0.01 for a detector). An
option of a group that does not apply to the task at hand is refused in one line (refuse_other_task).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import HeadstartError
from .text.options import TextOptions


# Every numeric option's range, in one place: the option objects below check the values given to them
# (None: the task's default) and headstart.engine.TrainConfig the values a run trains with, before any work.
SEED_LIMIT = 2**32  # NumPy's generators take seeds below this
RANGES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "epochs": (">= 1", lambda v: v >= 1), "head_epochs": (">= 1", lambda v: v >= 1),
    "unfreeze_every": (">= 1", lambda v: v >= 1), "lr": ("> 0", lambda v: v > 0),
    "body_lr_mult": ("> 0", lambda v: v > 0), "layer_decay": ("in (0, 1]", lambda v: 0 < v <= 1),
    "l2sp": (">= 0", lambda v: v >= 0), "weight_decay": (">= 0", lambda v: v >= 0),
    "batch_size": (">= 1", lambda v: v >= 1), "accumulate": (">= 1", lambda v: v >= 1),
    "warmup": ("in [0, 1)", lambda v: 0 <= v < 1), "patience": (">= 1", lambda v: v >= 1),
    "val_split": ("in [0, 1)", lambda v: 0 <= v < 1), "momentum": ("in [0, 1)", lambda v: 0 <= v < 1),
    "clip_grad": (">= 0", lambda v: v >= 0), "eval_every": (">= 1", lambda v: v >= 1),
    "head_c": ("> 0", lambda v: v > 0), "seed": (f"in [0, {SEED_LIMIT - 1}]", lambda v: 0 <= v < SEED_LIMIT),
    "hidden": (">= 1", lambda v: v >= 1), "dropout": ("in [0, 1)", lambda v: 0 <= v < 1),
    "budget": (">= 0 seconds (0: the linear probe, no trials)", lambda v: v >= 0),
    "input_size": (">= 16 pixels", lambda v: v >= 16),  # a detector needs >= 64 (detection.train.input_sizes)
    "max_size": (">= 16 pixels", lambda v: v >= 16), "extract_batch_size": (">= 1", lambda v: v >= 1),
    "num_workers": (">= 0", lambda v: v >= 0),
    # the other commands' (rank, advise, predict, pretrain, lr-find, demo)
    "processes": (">= 1", lambda v: v >= 1), "seeds": (">= 1", lambda v: v >= 1), "top_k": (">= 1", lambda v: v >= 1),
    "steps": (">= 5", lambda v: v >= 5), "shots": (">= 1", lambda v: v >= 1),
    "test_per_class": (">= 1", lambda v: v >= 1), "train_images": (">= 1", lambda v: v >= 1),
    "test_images": (">= 1", lambda v: v >= 1), "scratch_size": (">= 16 pixels", lambda v: v >= 16),
    "scratch_max_per_class": (">= 1", lambda v: v >= 1), "max_length": (">= 1", lambda v: v >= 1),
    "min_count": (">= 1", lambda v: v >= 1), "start_lr": ("> 0", lambda v: v > 0), "end_lr": ("> 0", lambda v: v > 0),
    "score_threshold": ("in [0, 1]", lambda v: 0 <= v <= 1), "test_fraction": ("in (0, 1)", lambda v: 0 < v < 1),
}
FLAGS = {"num_workers": "workers"}  # where the CLI's flag is not the name with dashes
ALIASES = {"workers": "num_workers"}  # a CLI parameter's name -> its range's


def check_value(name: str, value: Any) -> None:
    """`value` of the option `name` within its RANGES (None: the default, not checked), or one line naming the
    flag, its range and the value."""
    name = ALIASES.get(name, name)
    if name in RANGES and value is not None and not isinstance(value, bool):
        rule, ok = RANGES[name]
        if not ok(value):
            raise HeadstartError(f"--{FLAGS.get(name, name).replace('_', '-')} must be {rule}; got {value}")


def check_ranges(options: Any) -> None:
    """Each numeric field of the dataclass `options` with a value (not None) is within its RANGES."""
    for f in fields(options):
        check_value(f.name, getattr(options, f.name))


class Ranged:
    """An option group whose numeric fields are checked against RANGES when it is made."""

    def __post_init__(self) -> None:
        check_ranges(self)


VAL_SPLIT = 0.2  # the stratified validation fraction of runs that train the body
# --strategy contrastive trains the encoder and the head on every labelled text unless --val-split is given: a
# fixed budget of pair steps needs no epoch chosen on held-out texts, and with 8 per class a fifth held out is a
# handful that decides nothing. Rotten Tomatoes (benchmarks/bench_fewshot.py, 3 seeds): 8 per class 0.624 with
# every text against 0.608 with a fifth held out (and scored each epoch), 16 per class 0.672 against 0.661.
CONTRASTIVE_VAL_SPLIT = 0.0


@dataclass(frozen=True)
class TrainOptions(Ranged):
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
    val_split: float | None = None  # None: val_split_for(strategy)
    clip_grad: float | None = None

    def val_split_for(self, strategy: str) -> float:
        """The validation fraction: --val-split, or VAL_SPLIT; contrastive's is CONTRASTIVE_VAL_SPLIT."""
        if self.val_split is not None:
            return self.val_split
        return CONTRASTIVE_VAL_SPLIT if strategy.strip().lower() == "contrastive" else VAL_SPLIT


@dataclass(frozen=True)
class HeadOptions(Ranged):
    head: str = "linear"
    hidden: int = 512
    dropout: float = 0.0
    head_c: float | None = None
    class_balance: bool = True
    budget: float | None = None


@dataclass(frozen=True)
class DetectOptions(Ranged):
    detector: str = "auto"
    input_size: int | None = None
    max_size: int | None = None
    eval_every: int | None = None
    head_epochs: int | None = None


@dataclass(frozen=True)
class SetupOptions(Ranged):
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


@dataclass(frozen=True)
class AdaptOptions(Ranged):
    """Unlabelled examples (headstart.data.unlabelled) and how the head learns from them (headstart.adapt)."""

    unlabelled: str | Path | None = None
    adapt: str = "auto"


GROUPS: dict[str, type] = {"train": TrainOptions, "head": HeadOptions, "detect": DetectOptions, "setup": SetupOptions,
                           "adapt": AdaptOptions}
NAMES: dict[str, str] = {f.name: group for group, cls in GROUPS.items() for f in fields(cls)}


@dataclass(frozen=True)
class FitOptions:
    """Every option of a fit, by group."""

    train: TrainOptions = field(default_factory=TrainOptions)
    head: HeadOptions = field(default_factory=HeadOptions)
    detect: DetectOptions = field(default_factory=DetectOptions)
    setup: SetupOptions = field(default_factory=SetupOptions)
    text: TextOptions = field(default_factory=TextOptions)
    adapt: AdaptOptions = field(default_factory=AdaptOptions)

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
    "detect": (("head", "a detector has no classification head on features and its auto strategy is not measured"),
               ("adapt", "a detector does not learn from unlabelled images yet")),
    "classify": (("detect", "a classifier's head on cached features is one exact fit, and these are the detector's"),),
}


def refuse_other_task(task: str, opts: FitOptions) -> None:
    """Options of a group that does not apply to `task` (changed from their defaults) end in one line
    naming them and the task."""
    words = "detection" if task == "detect" else "classification"
    for group, why in NOT_FOR[task]:
        given, default = getattr(opts, group), GROUPS[group]()
        named = ["--no-class-balance" if f.name == "class_balance" else f"--{f.name.replace('_', '-')}"
                 for f in fields(given) if getattr(given, f.name) != getattr(default, f.name)]
        if task == "detect" and group == "head" and opts.text != TextOptions():
            named.append("text options (--text-column, ...)")
        if named:
            raise HeadstartError(f"{', '.join(named)} {'do' if len(named) > 1 else 'does'} not apply to {words} "
                                 f"({why}); leave {'them' if len(named) > 1 else 'it'} out")
