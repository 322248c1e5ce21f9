"""What trains when: strategies, their phases, freezing, learning rates per group, BatchNorm policy.

A strategy is a list of phases. Each phase trains the head plus the top `trainable` depth
groups of the body (0 = head only). A phase with a frozen body trains the head on cached
features (no body forward pass at all); only phases that train part of the body run it.

  linear-probe   head on cached features
  finetune       everything, the body at lr * body_lr_mult
  partial:N      the top N depth groups and the head
  gradual        ULMFiT: head alone, then one more group from the top every `unfreeze_every` epochs
  lp-ft          linear probe to convergence, then everything from that head (Kumar et al., 2022)
  frozen-then-finetune
                 everything but the first (input) group, then everything: for word-vector
                 networks, a new encoder learns over frozen embeddings, then the embeddings join
  contrastive    a transformer encoder tuned on pairs of labelled texts, then the head on its
                 tuned embeddings (headstart.classify.contrastive)
  auto           the linear probe, lp-ft or finetune, chosen by measuring them on the data (headstart.auto)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import HeadstartError

if TYPE_CHECKING:  # torch is imported by the functions that change modules: choosing a strategy needs none
    import torch
    from torch import nn

KINDS = ("linear-probe", "finetune", "partial", "gradual", "lp-ft", "frozen-then-finetune", "contrastive")
NAMES = ("auto", "linear-probe", "finetune", "partial:N", "gradual", "lp-ft", "frozen-then-finetune", "contrastive")
BN_POLICIES = ("frozen", "train")

# Defaults of the phases that train the body (a head on cached features is fitted exactly: headstart.probe).
BODY_EPOCHS = 15
BODY_PHASE_LR = 1e-3
BODY_PATIENCE = 5
WEIGHT_DECAY = 1e-4


@dataclass(frozen=True)
class Strategy:
    kind: str
    n: int = 0  # partial:N

    @property
    def name(self) -> str:
        return f"partial:{self.n}" if self.kind == "partial" else self.kind

    @property
    def trains_body(self) -> bool:
        return self.kind != "linear-probe"

    @property
    def fits_head_first(self) -> bool:
        """Whether a phase fits the head alone on cached features (headstart.probe), where --head-c applies."""
        return self.kind in ("linear-probe", "lp-ft", "gradual", "contrastive")

    @classmethod
    def parse(cls, text: str) -> "Strategy":
        t = text.strip().lower()
        if t in ("linear-probe", "finetune", "gradual", "lp-ft", "frozen-then-finetune", "contrastive"):
            return cls(t)
        if t.startswith("partial"):
            _, _, n = t.partition(":")
            if not n.isdigit() or int(n) < 1:
                raise HeadstartError(
                    f"--strategy '{text}': partial needs the number of top depth groups to train, e.g. partial:2"
                )
            return cls("partial", int(n))
        raise HeadstartError(f"--strategy must be one of {', '.join(NAMES)}; got '{text}'")

    def check(self, n_groups: int, model: str) -> None:
        if self.kind == "partial" and self.n > n_groups:
            raise HeadstartError(
                f"--strategy {self.name}: model '{model}' has {n_groups} depth groups; choose partial:1 to "
                f"partial:{n_groups}"
            )


@dataclass(frozen=True)
class Phase:
    name: str
    trainable: int  # top depth groups that train with the head; 0 = head only, from cached features
    epochs: int
    objective: str = "labels"  # what the body learns from: the labels, or "pairs" of them (contrastive)

    @property
    def from_cache(self) -> bool:
        return self.trainable == 0


def plan(strategy: Strategy, n_groups: int, epochs: int, head_epochs: int, unfreeze_every: int) -> list[Phase]:
    """The phases of a strategy for a body of `n_groups` depth groups."""
    if strategy.kind == "linear-probe":
        return [Phase("head", 0, head_epochs)]
    if strategy.kind == "finetune":
        return [Phase("finetune", n_groups, epochs)]
    if strategy.kind == "partial":
        return [Phase(strategy.name, strategy.n, epochs)]
    if strategy.kind == "lp-ft":
        return [Phase("head", 0, head_epochs), Phase("finetune", n_groups, epochs)]
    if strategy.kind == "contrastive":
        # every group but the first (a transformer's token embeddings, half of MiniLM's weights): the same accuracy
        # in less time (Rotten Tomatoes, benchmarks/bench_fewshot.py, 3 seeds: 8 per class 0.620 in 19 s against
        # 0.621 in 21 s with the embeddings training too; 16 per class 0.670 in 24 s against 0.672 in 28 s)
        return [Phase("pairs", max(1, n_groups - 1), epochs, "pairs"), Phase("head", 0, head_epochs)]
    if strategy.kind == "frozen-then-finetune":
        return [Phase("first group frozen", max(1, n_groups - 1), epochs), Phase("finetune", n_groups, epochs)]
    # gradual: the head alone, then one more group from the top every `unfreeze_every` epochs;
    # the last phase (all groups) gets whatever remains of `epochs`.
    k = max(1, unfreeze_every)
    phases = [Phase("head", 0, k)] + [Phase(f"top {i} of {n_groups}", i, k) for i in range(1, n_groups)]
    used = k * len(phases)
    phases.append(Phase(f"all {n_groups}", n_groups, max(k, epochs - used)))
    return phases


def set_trainable(model: nn.Module, groups: list[list[str]], trainable: int, prefix: str = "body.") -> None:
    """The top `trainable` body groups train, and everything that is not in a body group (the head);
    the other body groups are frozen. Body parameter names are `prefix` + a group's names."""
    body_names = {f"{prefix}{n}": g for g, names in enumerate(groups) for n in names}
    first = len(groups) - trainable
    for name, p in model.named_parameters():
        g = body_names.get(name)
        p.requires_grad_(g is None or g >= first)


def set_modes(model: nn.Module, bn: str) -> None:
    """Train mode where weights train, eval mode where they are frozen: a frozen module is a
    fixed function (no dropout, BatchNorm statistics fixed). The BatchNorm policy decides about
    the modules that train:
    frozen -- their BatchNorm statistics stay fixed too (the default; small batches give noisy
              statistics that shift the features a head was fitted to);
    train  -- their BatchNorm statistics follow the training batches (standard fine-tuning)."""
    from torch import nn

    if bn not in BN_POLICIES:
        raise HeadstartError(f"--bn must be one of {', '.join(BN_POLICIES)}; got '{bn}'")
    frozen: dict[str, bool] = {}
    for name, m in model.named_modules():
        own = list(m.parameters(recurse=True))
        if own:
            frozen[name] = not any(p.requires_grad for p in own)
        else:  # parameter-free (activation, dropout, pooling): follows the module that holds it
            frozen[name] = frozen.get(name.rpartition(".")[0], False) if name else False
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.training = bn == "train" and not frozen[name]
        else:
            m.training = not frozen[name]


def param_groups(
    model: nn.Module,
    groups: list[list[str]],
    trainable: int,
    lr: float,
    body_lr_mult: float,
    layer_decay: float,
    weight_decay: float,
    l2sp: float,
    prefix: str = "body.",
) -> list[dict]:
    """Optimizer groups: the head (every parameter outside the body's groups) at `lr`; body group g (of G)
    at lr * body_lr_mult * layer_decay^(G-1-g). No weight decay on biases and norm weights; none on the
    body when L2-SP pulls it to its start."""
    out: list[dict] = []
    params = dict(model.named_parameters())
    G = len(groups)
    in_body = {f"{prefix}{n}" for names in groups for n in names}

    def add(names: list[str], group_lr: float, label: str, decay: float) -> None:
        ps = [params[n] for n in names if params[n].requires_grad]
        dec = [p for p in ps if p.ndim > 1]
        nodec = [p for p in ps if p.ndim <= 1]
        if dec:
            out.append({"params": dec, "lr": group_lr, "weight_decay": decay, "name": f"{label}"})
        if nodec:
            out.append({"params": nodec, "lr": group_lr, "weight_decay": 0.0, "name": f"{label} (no decay)"})

    add([n for n in params if n not in in_body], lr, "head", weight_decay)
    for g in range(G - trainable, G):
        group_lr = lr * body_lr_mult * layer_decay ** (G - 1 - g)
        add([f"{prefix}{n}" for n in groups[g]], group_lr, f"body group {g}", 0.0 if l2sp else weight_decay)
    return out


class L2SP:
    """alpha/2 * ||w - w0||^2 over the trainable body weights: stay near the pretrained start
    (Li et al., ICML 2018)."""

    def __init__(self, model: nn.Module, alpha: float, prefix: str = "body.") -> None:
        self.alpha = alpha
        self.start = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith(prefix)}

    def __call__(self, model: nn.Module) -> torch.Tensor:
        total = None
        for n, p in model.named_parameters():
            if p.requires_grad and n in self.start:
                d = (p - self.start[n].to(p.device)).pow(2).sum()
                total = d if total is None else total + d
        if total is None:
            import torch

            return torch.zeros(())
        return 0.5 * self.alpha * total


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int):
    """Linear warm-up to each group's lr, then cosine decay to zero."""
    total_steps = max(1, total_steps)
    warmup_steps = min(max(0, warmup_steps), total_steps - 1) if total_steps > 1 else 0

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    import torch

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
