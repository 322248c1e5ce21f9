"""Where a run is, saved in every checkpoint: phase, epoch, what was learned so far, the best epoch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class RunState:
    """`best_key` orders validations: higher is better, compared as a tuple (classification: score, then
    minus the loss; detection: mAP, then mAP@.5). `phase_best_key` and `since_best` count patience
    within a phase."""

    phase: int = 0
    epoch: int = 0  # epochs completed in this phase
    global_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    phases: list[dict[str, Any]] = field(default_factory=list)
    best_key: list[float] | None = None
    best_epoch: int = -1
    phase_best_key: list[float] | None = None
    since_best: int = 0
    images: int = 0
    body_seconds: float = 0.0
    stopped_early: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunState":
        """A checkpoint's state, also as headstart 0.2 wrote it (classification's best_score and best_loss,
        detection's best_score pair and step_seconds)."""
        d = dict(d)
        if "best_loss" in d or "phase_best_loss" in d:  # 0.2 classification

            def key(score: float | None, loss: float | None) -> list[float] | None:
                return None if score is None else [score, -(float("inf") if loss is None else loss)]

            d["best_key"] = key(d.pop("best_score", None), d.pop("best_loss", None))
            d["phase_best_key"] = key(d.pop("phase_best", None), d.pop("phase_best_loss", None))
        elif "best_score" in d:  # 0.2 detection
            d["best_key"] = list(d.pop("best_score")) if d.get("best_score") is not None else d.pop("best_score")
        if "step_seconds" in d:
            d["body_seconds"] = d.pop("step_seconds")
        for k in ("history", "phases"):
            d[k] = d.get(k) or []
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
