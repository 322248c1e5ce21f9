"""Head surgery: cut a classifier into body and head, attach a new head.

Works on any nn.Module: the head is the module the card names, or else the last
nn.Linear in the module tree. The body is the same network with that module replaced by
nn.Identity, so it keeps the architecture's own pooling and returns pooled features.
"""

from __future__ import annotations

from torch import Tensor, nn

from .errors import HeadstartError


def find_classifier(model: nn.Module) -> str:
    """Name of the last nn.Linear in `model` (the usual place of an output layer)."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name:
            last = name
    if last is None:
        raise HeadstartError(
            f"{type(model).__name__} has no nn.Linear output layer to replace; "
            "name the classifier module explicitly (classifier=...)"
        )
    return last


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def split(model: nn.Module, classifier: str | None = None) -> tuple[nn.Module, nn.Module]:
    """Cut `model` in place into (body, old_head); the body returns features."""
    name = classifier or find_classifier(model)
    try:
        old = model.get_submodule(name)
    except AttributeError:
        raise HeadstartError(
            f"{type(model).__name__} has no submodule '{name}' to use as its classifier"
        ) from None
    _set_submodule(model, name, nn.Identity())
    return model, old


def pool_features(f: Tensor) -> Tensor:
    """Bodies that stop before pooling return maps: average them to one vector per input."""
    if f.ndim == 4:
        return f.mean(dim=(2, 3))
    if f.ndim > 2:
        return f.flatten(1)
    return f


class TransferModel(nn.Module):
    """A pretrained body with a new head; forward() maps images to class logits."""

    def __init__(self, body: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.head = head

    def forward_features(self, x: Tensor) -> Tensor:
        return pool_features(self.body(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x))
