"""New heads for a transferred body: `linear`, or `mlp` with a hidden layer and dropout.

Torch is imported by the functions that build or change modules, not by this module: a head's
spec is read by commands that never build one (`headstart --help`, a cached re-fit)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from .errors import HeadstartError

if TYPE_CHECKING:
    from torch import nn

HEAD_KINDS = ("linear", "mlp")


@dataclass(frozen=True)
class HeadSpec:
    kind: Literal["linear", "mlp"] = "linear"
    hidden: int = 512
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in HEAD_KINDS:
            raise HeadstartError(f"--head must be one of {', '.join(HEAD_KINDS)}; got '{self.kind}'")
        if self.hidden < 1:
            raise HeadstartError(f"--hidden must be >= 1; got {self.hidden}")
        if not 0.0 <= self.dropout < 1.0:
            raise HeadstartError(f"--dropout must be in [0, 1); got {self.dropout}")

    def build(self, in_features: int, num_classes: int) -> "nn.Sequential":
        from torch import nn

        layers: list[tuple[str, nn.Module]] = []
        if self.kind == "linear":
            if self.dropout:
                layers.append(("dropout", nn.Dropout(self.dropout)))
            layers.append(("fc", nn.Linear(in_features, num_classes)))
        else:
            layers += [
                ("fc1", nn.Linear(in_features, self.hidden)),
                ("act", nn.ReLU()),
                ("dropout", nn.Dropout(self.dropout)),
                ("fc2", nn.Linear(self.hidden, num_classes)),
            ]
        return nn.Sequential(OrderedDict(layers))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "HeadSpec":
        return cls(kind=d.get("kind", "linear"), hidden=int(d.get("hidden", 512)), dropout=float(d.get("dropout", 0.0)))
