"""Building a card's network: the architecture from timm or torchvision, then its weights."""

from __future__ import annotations

import difflib
from functools import lru_cache
from typing import TYPE_CHECKING

from ..errors import HeadstartError
from .card import ModelCard
from .weights import locate, match_state_dict, read_state_dict, verify_sha256

if TYPE_CHECKING:
    from torch import nn

LIBRARIES = ("timm", "torchvision")


@lru_cache(maxsize=1)
def _timm_names() -> frozenset[str]:
    import timm

    return frozenset(timm.list_models())


@lru_cache(maxsize=1)
def _torchvision_names() -> frozenset[str]:
    import torchvision

    return frozenset(torchvision.models.list_models(module=torchvision.models))


def normalize_architecture(arch: str) -> str:
    """'resnet18' -> 'timm:resnet18'; 'torchvision:resnet18' stays; unknown names are refused."""
    arch = arch.strip()
    lib, _, name = arch.partition(":") if ":" in arch else ("", "", arch)
    base = name.split(".")[0]  # timm tags (resnet18.a1_in1k) name weights, not architectures
    if lib in ("", "timm") and base in _timm_names():
        return f"timm:{base}"
    if lib in ("", "torchvision") and base in _torchvision_names():
        return f"torchvision:{base}"
    pool = {"timm": _timm_names(), "torchvision": _torchvision_names()}.get(lib, _timm_names() | _torchvision_names())
    close = difflib.get_close_matches(base, sorted(pool), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "; any timm or torchvision architecture name works"
    raise HeadstartError(f"unknown architecture '{arch}'{hint}")


def build_architecture(arch: str, num_classes: int = 1000) -> nn.Module:
    """A randomly initialised network of `arch` ("timm:NAME" or "torchvision:NAME")."""
    lib, _, name = normalize_architecture(arch).partition(":")
    if lib == "timm":
        import timm

        return timm.create_model(name, pretrained=False, num_classes=num_classes)
    import torchvision

    return torchvision.models.get_model(name, weights=None, num_classes=num_classes)


def load_network(card: ModelCard, allow_download: bool = False) -> nn.Module:
    """The card's full pretrained network (source head included when the file has one), in eval mode."""
    model = build_architecture(card.architecture, num_classes=card.source_classes or 1000)
    path = locate(card, allow_download=allow_download)
    if path is not None:
        verify_sha256(card, path)
        sd = read_state_dict(path)
        mapped, _ = match_state_dict(model, sd, card.weights.key_map, card.classifier, f"model '{card.name}' ({path})")
        missing, _unexpected = model.load_state_dict(mapped, strict=False)
        leftover = [k for k in missing if not k.startswith(card.classifier) and not k.endswith("num_batches_tracked")]
        if leftover:  # match_state_dict already checked coverage; this guards against a bug there
            raise RuntimeError(f"weights for {card.name} left {leftover[:3]} unset")
    return model.eval()


def meta_model(arch: str, num_classes: int = 1000) -> nn.Module:
    """The architecture on the meta device: shapes and names without allocating weights."""
    import torch

    with torch.device("meta"):
        return build_architecture(arch, num_classes)
