"""`headstart models add / remove`: the user's zoo changed. A card folder, a finished run or a weights
file becomes a named card (its weights copied as safetensors beside a card.json), or a card goes."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from ..errors import HeadstartError
from ..fileio import atomic_dir, sha256_file
from .builtin import BUILTIN_CARDS
from .card import ModelCard, Preprocessing
from .registry import get_card
from .user import CARD_FILE, NAME_PATTERN, WEIGHTS_FILE, user_cards, write_card_folder, zoo_card, zoo_root


def add_card(name: str, source: str | Path, *, arch: str | None = None, mean: tuple[float, ...] | None = None,
             std: tuple[float, ...] | None = None, input_size: int | None = None, overwrite: bool = False,
             description: str | None = None) -> ModelCard:
    """Register `source` (a card folder, a finished run, or a weights file with `arch`) as NAME in
    the user's zoo: its weights are copied as safetensors beside a card.json."""
    if not NAME_PATTERN.match(name):
        raise HeadstartError(f"model name '{name}' must be letters, digits, '_', '.' or '-' (at most 64), "
                             "starting with a letter or digit")
    if name in BUILTIN_CARDS:
        raise HeadstartError(f"'{name}' is a built-in model; choose another name")
    target = zoo_root() / name
    if target.exists() and not overwrite:
        raise HeadstartError(f"the zoo already has a model '{name}' ({target}); pass --overwrite to replace it, "
                             f"or `headstart models remove {name}` first")
    src = Path(source).expanduser()
    if not src.exists():
        raise HeadstartError(f"--from '{source}' does not exist; give a card folder, a run folder or a weights file")
    if src.is_dir() and arch:
        raise HeadstartError(f"--from '{source}' is a folder, which names its own architecture; drop --arch")
    card = get_card(f"file:{src}", arch=arch)
    if card.modality != "image" or card.weights.kind != "file":
        raise HeadstartError(f"--from '{source}' is not an image model; the zoo holds image models for now")
    card = _overridden(card, mean, std, input_size)
    from .build import load_network

    load_network(card)  # architecture and weights must agree (else: the first mismatched tensor, both shapes)
    with atomic_dir(target, replace=True) as tmp:
        weights = Path(card.weights.location)
        if weights.suffix == ".safetensors":
            shutil.copyfile(weights, tmp / WEIGHTS_FILE)
        else:  # a plain state_dict, already read as data (weights_only): kept as safetensors from now on
            from safetensors.torch import save_file

            from .weights import read_state_dict

            save_file({k: v.contiguous() for k, v in read_state_dict(weights).items()}, str(tmp / WEIGHTS_FILE))
        card = dataclasses.replace(
            card, name=name, description=description or card.description,
            weights=dataclasses.replace(card.weights, location=WEIGHTS_FILE, sha256=sha256_file(tmp / WEIGHTS_FILE)),
            extra={k: v for k, v in card.extra.items() if k != "zoo"} | {"added_from": str(src.resolve())})
        write_card_folder(card, tmp)
    return zoo_card(target)


def _overridden(card: ModelCard, mean: tuple[float, ...] | None, std: tuple[float, ...] | None,
                input_size: int | None) -> ModelCard:
    pre = card.preprocessing
    assert isinstance(pre, Preprocessing)
    for what, v in (("--mean", mean), ("--std", std)):
        if v is not None and (len(v) != 3 or (what == "--std" and min(v) <= 0)):
            raise HeadstartError(f"{what} needs 3 numbers (one per RGB channel{', each > 0' if what == '--std' else ''}), "
                                 f"e.g. {what} 0.5,0.5,0.5; got {','.join(map(str, v))}")
    if input_size is not None and input_size < 8:
        raise HeadstartError(f"--input-size must be >= 8 pixels; got {input_size}")
    changes: dict[str, Any] = {}
    if mean is not None:
        changes["mean"] = tuple(float(x) for x in mean)
    if std is not None:
        changes["std"] = tuple(float(x) for x in std)
    if input_size is not None:  # keep the card's resize / crop ratio
        changes["resize"] = max(input_size, round(input_size * pre.resize / pre.crop))
        changes["crop"] = input_size
    return dataclasses.replace(card, preprocessing=dataclasses.replace(pre, **changes)) if changes else card


def remove_card(name: str) -> Path:
    from .builtin import BUILTIN_CARDS

    if name in BUILTIN_CARDS:
        raise HeadstartError(f"'{name}' is a built-in model; only models you added can be removed")
    target = zoo_root() / name
    if not NAME_PATTERN.match(name) or not (target / CARD_FILE).is_file():
        names = ", ".join(c.name for c in user_cards()) or "none yet"
        raise HeadstartError(f"the zoo at {zoo_root()} has no model '{name}' (yours: {names})")
    if target.is_symlink():  # an entry linked in by hand: the link goes, what it points to stays
        target.unlink()
    else:
        shutil.rmtree(target)
    return target
