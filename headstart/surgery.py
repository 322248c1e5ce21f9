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


def depth_groups(body: nn.Module, min_groups: int = 4) -> list[list[str]]:
    """The body's parameter names in groups from the input (first) to the output (last).

    Unfreezing works group by group from the top. Text bodies and timm models say where
    their layers are (depth_groups, group_matcher); for any other module the tree is used: its children in
    registration order, opening the largest container until there are at least
    `min_groups`, with consecutive single layers (conv1, bn1, ...) kept together.
    """
    names = [n for n, _ in body.named_parameters()]
    if not names:
        return []
    if hasattr(body, "depth_groups"):  # text bodies say where their layers are (headstart.text.bodies)
        return body.depth_groups()
    if hasattr(body, "group_matcher"):
        try:
            from timm.models._manipulate import group_parameters

            grouped = group_parameters(body, body.group_matcher(coarse=True))
            groups = [list(v) for _, v in sorted(grouped.items())]
            if sum(map(len, groups)) == len(names) and len(groups) > 1:
                return groups
        except (AttributeError, NotImplementedError, TypeError, KeyError):
            pass
    return _tree_groups(body, names, min_groups)


def _param_count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _tree_groups(body: nn.Module, names: list[str], min_groups: int) -> list[list[str]]:
    # units: (prefix, module) with parameters, in registration order
    units = [(n, m) for n, m in body.named_children() if _param_count(m)]
    if any(p.numel() for p in body.parameters(recurse=False)):
        units.insert(0, ("", None))  # parameters held directly by the body (e.g. a class token)
    while len(units) < min_groups:
        idx = max((i for i, (_, m) in enumerate(units) if m is not None and len(list(_children_with_params(m))) > 1),
                  key=lambda i: _param_count(units[i][1]), default=None)
        if idx is None:
            break
        prefix, m = units[idx]
        units[idx : idx + 1] = [(f"{prefix}.{n}" if prefix else n, c) for n, c in _children_with_params(m)]
    groups: list[list[str]] = []
    for prefix, m in units:
        if m is None:
            owned = [n for n, _ in body.named_parameters(recurse=False)]
        else:
            owned = [n for n in names if n.startswith(prefix + ".")]
        if isinstance(m, _NORMS) and groups:
            groups[-1] += owned  # a norm layer belongs with the layer before it (conv1 + bn1)
        else:
            groups.append(owned)
    covered = {n for g in groups for n in g}
    missing = [n for n in names if n not in covered]
    if missing:  # anything not reached (should not happen) trains with the top group
        groups[-1] += missing
    return [g for g in groups if g]


_NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


def _children_with_params(m: nn.Module):
    return [(n, c) for n, c in m.named_children() if _param_count(c)]
