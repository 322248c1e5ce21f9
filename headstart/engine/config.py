"""What decides what a training run computes: one configuration for every task, saved with the run
and compared on --resume. Each option's range is checked here, once; a task refuses the options it
has no use for (headstart.engine.loop.Task.refuses)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from numbers import Integral, Real
from typing import Any

from ..errors import HeadstartError
from ..options import check_ranges

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
TRACKERS = ("tensorboard", "mlflow")
OPTIMIZERS = ("adamw", "sgd")
AUGMENTATIONS = ("crop-flip", "crop", "flip", "none")  # what a task does with each: its own `augmentations`
BN_POLICIES = ("frozen", "train")
_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (Integral,), "float": (Real,), "bool": (bool,),
                                       "dict[str,Any]": (dict,)}  # a field's annotation -> the values it takes
_NAMES = {"str": "a text", "int": "a whole number", "float": "a number", "bool": "true or false",
          "dict[str,Any]": "a mapping"}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what a run computes.

    `head_epochs` is the length of a phase that trains the head alone where it is trained by epochs
    (detection); a classification head on cached features is one exact fit. `patience` counts
    validations without a better score in the last phase (None: never stop early). `eval_every`:
    validate every this many epochs (and at each phase's end). `clip_grad`: the gradient norm's
    ceiling (0: none)."""

    strategy: str
    head: dict[str, Any] = field(default_factory=dict)
    epochs: int = 15
    head_epochs: int = 1
    unfreeze_every: int = 1
    lr: float = 1e-3
    body_lr_mult: float = 0.1
    layer_decay: float = 1.0
    l2sp: float = 0.0
    weight_decay: float = 1e-4
    batch_size: int = 16
    accumulate: int = 1
    warmup: float = 0.1
    patience: int | None = 5
    augment: str = "crop-flip"
    bn: str = "frozen"
    precision: str = "auto"
    seed: int = 0
    val_split: float = 0.2
    class_balance: bool = True
    head_c: float | None = None  # the head phase's L2 strength (None: chosen by cross-validation)
    optimizer: str = "adamw"
    momentum: float = 0.9  # SGD's
    clip_grad: float = 0.0
    eval_every: int = 1

    def __post_init__(self) -> None:
        for f in fields(self):  # a value of the wrong type (an edited headstart.json) is refused, like one out of range
            kinds = str(f.type).replace(" ", "").split("|")
            value = getattr(self, f.name)
            if value is None and "None" in kinds:
                continue
            types = tuple(t for k in kinds if k != "None" for t in _TYPES[k])
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                raise HeadstartError(f"--{f.name.replace('_', '-')} must be {_NAMES[kinds[0]]}; got {value!r}")
        check_ranges(self)
        for name, value, allowed in (("augment", self.augment, AUGMENTATIONS), ("bn", self.bn, BN_POLICIES),
                                     ("precision", self.precision, PRECISIONS),
                                     ("optimizer", self.optimizer, OPTIMIZERS)):
            if value not in allowed:
                raise HeadstartError(f"--{name} must be one of {', '.join(allowed)}; got '{value}'")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "", **defaults: Any) -> "TrainConfig":
        """A saved configuration; `defaults` fill what a run written by an older headstart did not save.
        `where`: the file it was read from, named with the value that is out of range or of the wrong type."""
        names = {f.name for f in fields(cls)}
        try:
            return cls(**(defaults | {k: v for k, v in d.items() if k in names}))
        except (HeadstartError, TypeError, ValueError) as e:
            if not where:
                raise
            raise HeadstartError(f"{where}: its config is not valid ({e}); it was edited or damaged: restore it, or "
                                 "start the run again with --out") from None
