"""Turning what the user typed after --model into a ModelCard.

  efficientnet_lite0            a built-in card
  file:PATH  (with --arch)      a local weights file (safetensors or a plain state_dict)
  timm:NAME[.TAG]               timm weights already in the local Hugging Face / torch cache
  torchvision:NAME[.WEIGHTS]    torchvision weights already in the local torch hub cache
  hf:REPO_OR_FOLDER             a timm model folder (config.json + model.safetensors), or a Hugging Face /
                                sentence-transformers text encoder folder; local or cached, never fetched
  file:VECTORS                  word vectors: GloVe .txt, word2vec .txt or .bin (text DATA)
  file:DIR                      a card folder (card.json + weights: `headstart pretrain`) or a finished run
  NAME                          a card you added to your zoo (`headstart models add`; headstart.zoo.user)
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import HeadstartError
from ..fileio import sha256_file
from .build import meta_model, normalize_architecture
from .builtin import BUILTIN_CARDS
from .card import ModelCard, Preprocessing, WeightKind, WeightSource
from .user import source_folder_card, user_card, user_cards
from .weights import locate, read_state_dict

if TYPE_CHECKING:
    from torch import nn

PREFIXES = ("file:", "timm:", "torchvision:", "hf:")


def list_cards() -> list[ModelCard]:
    """The built-in cards, then those in the user's zoo."""
    return list(BUILTIN_CARDS.values()) + user_cards()


def get_card(spec: str, arch: str | None = None, allow_download: bool = False) -> ModelCard:
    spec = spec.strip()
    if spec in BUILTIN_CARDS:
        return BUILTIN_CARDS[spec]
    mine = user_card(spec)
    if mine is not None:
        return mine
    if spec.startswith("file:"):
        return _file_card(spec, arch)
    if spec.startswith("timm:"):
        return _with_sha(_timm_card(spec), allow_download)
    if spec.startswith("torchvision:"):
        return _with_sha(_torchvision_card(spec), allow_download)
    if spec.startswith("hf:"):
        return _with_sha(_hf_card(spec), allow_download)
    names = sorted(BUILTIN_CARDS) + sorted(c.name for c in user_cards())
    close = difflib.get_close_matches(spec, names, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise HeadstartError(
        f"unknown model '{spec}'; {hint}`headstart models` lists the installed ones "
        f"({', '.join(names)}); other sources: {', '.join(p + '...' for p in PREFIXES)}"
    )


def _with_sha(card: ModelCard, allow_download: bool) -> ModelCard:
    path = locate(card, allow_download=allow_download)
    assert path is not None
    return dataclasses.replace(card, weights=dataclasses.replace(card.weights, sha256=sha256_file(path)))


def classifier_of(model: nn.Module, hint: str | None) -> tuple[str, int]:
    """Name and input width of the source head (the card's name, else the last Linear)."""
    from torch import nn

    if hint:
        try:
            mod = model.get_submodule(hint)
        except AttributeError:
            mod = None
        lin = mod if isinstance(mod, nn.Linear) else None
        if lin is None and mod is not None:
            lin = next((m for m in mod.modules() if isinstance(m, nn.Linear)), None)
        if lin is not None:
            return hint, lin.in_features
    from ..surgery import find_classifier

    name = find_classifier(model)
    lin = model.get_submodule(name)
    parent = name.rsplit(".", 1)[0] if "." in name else ""
    block = model.get_submodule(parent) if parent else None
    if isinstance(block, nn.Sequential) and all(
        m is lin or not any(True for _ in m.parameters(recurse=False)) for m in block.modules()
    ):
        name = parent  # cut at the head block (dropout + linear), not inside it
    return name, lin.in_features  # type: ignore[return-value]


def _preproc_from_timm_cfg(cfg: dict[str, Any]) -> Preprocessing:
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    interp = cfg.get("interpolation") or "bicubic"
    return Preprocessing.from_crop_pct(
        size,
        float(cfg.get("crop_pct") or 0.875),
        interpolation=interp if interp in ("nearest", "bilinear", "bicubic", "lanczos") else "bicubic",
        mean=tuple(cfg.get("mean") or (0.485, 0.456, 0.406)),
        std=tuple(cfg.get("std") or (0.229, 0.224, 0.225)),
    )


def timm_cfg(name: str) -> dict[str, Any]:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    return cfg.to_dict() if cfg is not None else {}


def _default_preprocessing(arch: str) -> Preprocessing:
    lib, _, name = arch.partition(":")
    if lib == "timm":
        cfg = timm_cfg(name)
        if cfg:
            return _preproc_from_timm_cfg(cfg)
    else:
        try:
            import torchvision

            w = torchvision.models.get_model_weights(name).DEFAULT
            return _preproc_from_torchvision(w)
        except (ValueError, AttributeError, KeyError):
            pass
    return Preprocessing(crop=224, resize=256, interpolation="bicubic")


def _preproc_from_torchvision(w: Any) -> Preprocessing:
    t = w.transforms()
    crop = int(t.crop_size[0])
    return Preprocessing(
        crop=crop,
        resize=int(t.resize_size[0]),
        interpolation=str(t.interpolation.value),
        mean=tuple(t.mean),
        std=tuple(t.std),
    )


def _file_card(spec: str, arch: str | None) -> ModelCard:
    path = Path(spec[len("file:"):]).expanduser()
    if path.is_dir():
        if arch:
            raise HeadstartError(f"'{spec}' is a folder (a card folder or a run), which names its own architecture; "
                                 "drop --arch")
        return source_folder_card(spec, path)
    if not arch and path.is_file():
        from ..text.network import is_vectors_file, vectors_file_card

        if is_vectors_file(path):
            return vectors_file_card(spec, path)
    if not arch:
        raise HeadstartError(
            f"'{spec}' needs the architecture its weights belong to: add --arch NAME "
            "(a timm or torchvision name, e.g. --arch timm:resnet18)"
        )
    if not path.is_file():
        raise HeadstartError(f"weights file {path} (from --model {spec}) does not exist")
    from torch import nn

    arch = normalize_architecture(arch)
    sd = read_state_dict(path)
    lib, _, name = arch.partition(":")
    hint = timm_cfg(name).get("classifier") if lib == "timm" else None
    model = meta_model(arch)
    classifier, num_features = classifier_of(model, hint)
    head_w = sd.get(f"{classifier}.weight")
    if head_w is None:  # the classifier may be a Sequential: its last Linear holds the class count
        lin_names = [n for n, m in model.get_submodule(classifier).named_modules() if isinstance(m, nn.Linear)]
        if lin_names:
            head_w = sd.get(f"{classifier}.{lin_names[-1]}.weight".replace("..", "."))
    source_classes = int(head_w.shape[0]) if head_w is not None and head_w.ndim == 2 else 0
    return ModelCard(
        name=spec,
        modality="image",
        architecture=arch,
        weights=WeightSource(kind="file", location=str(path.resolve()), sha256=sha256_file(path), key_map="name",
                             source_head=source_classes > 0),
        preprocessing=_default_preprocessing(arch),
        num_features=num_features,
        classifier=classifier,
        source_dataset="user file",
        source_classes=source_classes,
        license="unknown (user file)",
        description=f"{arch} weights from {path}",
    )


def _timm_card(spec: str) -> ModelCard:
    full = spec[len("timm:"):]
    arch = normalize_architecture(f"timm:{full}")
    cfg = timm_cfg(full)
    if not cfg:
        raise HeadstartError(f"timm has no pretrained weights registered for '{full}'")
    location = f"hf:{cfg['hf_hub_id']}" if cfg.get("hf_hub_id") else cfg.get("url", "")
    if not location:
        raise HeadstartError(f"timm does not say where the weights of '{full}' live")
    return _timm_style_card(spec, arch, cfg, "timm-cache", location, f"timm {full}", str(cfg.get("tag") or ""))


def _torchvision_card(spec: str) -> ModelCard:
    import torchvision

    full = spec[len("torchvision:"):]
    name, _, wname = full.partition(".")
    arch = normalize_architecture(f"torchvision:{name}")
    enum = torchvision.models.get_model_weights(name)
    try:
        w = enum[wname] if wname else enum.DEFAULT
    except KeyError:
        raise HeadstartError(
            f"torchvision has no weights '{wname}' for {name}; choose one of {', '.join(e.name for e in enum)}"
        ) from None
    n_classes = len(w.meta.get("categories") or [])
    model = meta_model(arch, n_classes or 1000)
    classifier, num_features = classifier_of(model, None)
    return ModelCard(
        name=spec,
        modality="image",
        architecture=arch,
        weights=WeightSource(kind="torchvision-cache", location=w.url, key_map="name", source_head=n_classes > 0),
        preprocessing=_preproc_from_torchvision(w),
        num_features=num_features,
        classifier=classifier,
        source_dataset="ImageNet-1k" if n_classes == 1000 else "",
        source_classes=n_classes,
        license="BSD-3-Clause (torchvision)",
        description=f"torchvision {name} {w.name}",
    )


def _hf_card(spec: str) -> ModelCard:
    from huggingface_hub import try_to_load_from_cache

    repo = spec[len("hf:"):]
    local = Path(repo).expanduser()
    if local.is_dir():
        cfg_path: Path | None = local / "config.json"
    else:
        found = try_to_load_from_cache(repo, "config.json")
        cfg_path = Path(found) if isinstance(found, str) else None
    if cfg_path is None or not cfg_path.is_file():
        raise HeadstartError(
            f"'{spec}': no config.json in {local if local.is_dir() else 'the local Hugging Face cache for ' + repo}; "
            "give a folder holding a timm model (config.json + model.safetensors) or a repo already in the cache"
        )
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError):
        raise HeadstartError(f"{cfg_path} is not valid JSON; repair the model folder") from None
    if isinstance(cfg, dict) and "model_type" in cfg and "architecture" not in cfg:  # a transformers encoder
        from ..text.network import transformers_card

        return transformers_card(spec, cfg_path.parent, str(local.resolve()) if local.is_dir() else repo, cfg)
    try:
        arch = normalize_architecture(f"timm:{cfg['architecture']}")
    except (KeyError, TypeError):
        raise HeadstartError(f"{cfg_path} is not a timm model config (no 'architecture' key)") from None
    pcfg = dict(cfg.get("pretrained_cfg") or {})
    pcfg["num_classes"] = cfg.get("num_classes") or pcfg.get("num_classes")
    pcfg.setdefault("license", cfg.get("license"))
    location = str(local.resolve()) if local.is_dir() else repo
    return _timm_style_card(spec, arch, pcfg, "hf-cache", location, f"timm model {repo}", "")


def _timm_style_card(spec: str, arch: str, cfg: dict[str, Any], kind: WeightKind, location: str,
                     description: str, source: str) -> ModelCard:
    """A card from a timm pretrained_cfg: preprocessing, classifier and class count come from it."""
    n_classes = int(cfg.get("num_classes") or 0)
    model = meta_model(arch, n_classes or 1000)
    classifier, num_features = classifier_of(model, cfg.get("classifier"))
    return ModelCard(
        name=spec,
        modality="image",
        architecture=arch,
        weights=WeightSource(kind=kind, location=location, key_map="name", source_head=n_classes > 0),
        preprocessing=_preproc_from_timm_cfg(cfg),
        num_features=num_features,
        classifier=classifier,
        source_dataset=source,
        source_classes=n_classes,
        license=str(cfg.get("license") or "see the model's page"),
        description=description,
    )
