"""Your own source models: card folders, runs as sources, and the user's zoo.

  card folder   card.json (a ModelCard as data) + the weights file it names, beside it.
                `headstart pretrain` writes one (its DIR is a run folder too); `--model file:DIR`
                reads it.
  run folder    a finished `headstart fit` (or pretrain) run is a source model as it stands:
                its body, and its head when that is linear, become the card's network
                (`--model file:RUN_DIR`), so transfers chain.
  user zoo      HEADSTART_ZOO (default ~/.local/share/headstart/zoo, or under XDG_DATA_HOME):
                one card folder per name; `headstart models add NAME --from DIR|FILE` fills it,
                `models remove NAME` empties it, and NAME then works like a built-in card.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from ..errors import HeadstartError
from ..fileio import atomic_dir, atomic_write_json, sha256_file
from .card import ModelCard, Preprocessing, WeightSource

CARD_FILE, WEIGHTS_FILE = "card.json", "model.safetensors"
CARD_FORMAT = "headstart-card/1"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def zoo_root() -> Path:
    if os.environ.get("HEADSTART_ZOO"):
        return Path(os.environ["HEADSTART_ZOO"]).expanduser()
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data_home / "headstart" / "zoo"


def card_from_run(run_dir: str | Path, name: str | None = None) -> ModelCard:
    """The card of a finished image run used as a source model: the run's architecture and
    preprocessing, its weights file read with key_map "run" (body.* is the architecture
    without its classifier; a linear head.fc is the classifier, so LEEP and NCE can use it)."""
    from ..run import METRICS_FILE, RUN_FILE, WEIGHTS_FILE as RUN_WEIGHTS, run_info

    d = Path(run_dir).expanduser()
    info = run_info(d)
    if info is None:
        raise HeadstartError(f"'{d}' is neither a card folder ({CARD_FILE}) nor a headstart run ({RUN_FILE})")
    if info.get("status") != "finished":
        raise HeadstartError(f"run '{d}' has not finished; continue it with `headstart fit --resume {d}` first")
    card = ModelCard.from_dict(info["card"])
    if card.modality != "image" or card.architecture in ("transformers", "word-vectors"):
        raise HeadstartError(f"run '{d}' is a text run; only image runs can be source models for now")
    weights = d / RUN_WEIGHTS
    if not weights.is_file():
        raise HeadstartError(f"run '{d}' has no {RUN_WEIGHTS}; fit it again")
    head = info.get("head") or {}
    linear = head.get("kind", "linear") == "linear"
    try:
        metrics = json.loads((d / METRICS_FILE).read_text())
    except (OSError, ValueError):
        metrics = {}
    data = info.get("data")  # DATA's path (a run in progress keeps a record of it instead)
    source = Path(str((data.get("source") if isinstance(data, dict) else data) or d)).name
    return dataclasses.replace(
        card,
        name=name or f"file:{d}",
        weights=WeightSource(kind="file", location=str(weights.resolve()), sha256=sha256_file(weights),
                             key_map="run", source_head=linear),
        source_dataset=source,
        source_size=int(metrics.get("n_train", 0) + metrics.get("n_val", 0)),
        source_classes=len(info["classes"]) if linear else 0,
        license="yours",
        description=f"{card.architecture} trained in {d} ({metrics.get('strategy', info.get('strategy', ''))} "
                    f"from {card.name})",
        builtin=False,
        extra=card.extra | {"classes": list(info["classes"]), "from_run": str(d.resolve())},
    )


def write_card_folder(card: ModelCard, folder: Path, weights_name: str = WEIGHTS_FILE) -> None:
    """card.json in `folder`, naming its weights file relative to it (the folder can move)."""
    d = card.to_dict()
    d["weights"]["location"] = weights_name
    atomic_write_json(folder / CARD_FILE, {"format": CARD_FORMAT, "card": d})


def read_card_folder(folder: str | Path, name: str | None = None) -> ModelCard:
    folder = Path(folder).expanduser()
    path = folder / CARD_FILE
    try:
        record = json.loads(path.read_text())
        if record.get("format") != CARD_FORMAT:
            raise ValueError(f"format {record.get('format')!r}, expected {CARD_FORMAT!r}")
        card = ModelCard.from_dict(record["card"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise HeadstartError(f"{path} is not a readable model card ({str(e)[:120]}); add the model again") from None
    weights = folder / card.weights.location
    if card.weights.kind != "file" or not weights.is_file():
        raise HeadstartError(f"{path} names weights '{card.weights.location}', which are not in {folder}")
    return dataclasses.replace(card, name=name or card.name,
                               weights=dataclasses.replace(card.weights, location=str(weights.resolve())))


def source_folder_card(spec: str, folder: Path) -> ModelCard:
    """`file:DIR`: a card folder, or a finished run."""
    if (folder / CARD_FILE).is_file():
        return read_card_folder(folder, name=spec)
    return card_from_run(folder, name=spec)


def user_cards() -> list[ModelCard]:
    root = zoo_root()
    if not root.is_dir():
        return []
    cards = []
    for d in sorted(root.iterdir()):
        if d.is_dir() and (d / CARD_FILE).is_file() and _NAME.match(d.name):
            try:
                cards.append(_zoo_card(d))
            except HeadstartError:
                continue  # a damaged entry does not hide the rest; `get_card(NAME)` says what is wrong
    return cards


def user_card(name: str) -> ModelCard | None:
    d = zoo_root() / name
    return _zoo_card(d) if _NAME.match(name) and (d / CARD_FILE).is_file() else None


def _zoo_card(d: Path) -> ModelCard:
    card = read_card_folder(d, name=d.name)
    return dataclasses.replace(card, extra=card.extra | {"zoo": str(d)})


def add_card(name: str, source: str | Path, *, arch: str | None = None, mean: tuple[float, ...] | None = None,
             std: tuple[float, ...] | None = None, input_size: int | None = None, overwrite: bool = False,
             description: str | None = None) -> ModelCard:
    """Register `source` (a card folder, a finished run, or a weights file with `arch`) as NAME in
    the user's zoo: its weights are copied as safetensors beside a card.json."""
    from .builtin import BUILTIN_CARDS
    from .registry import get_card

    if not _NAME.match(name):
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
    return _zoo_card(target)


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
    if not _NAME.match(name) or not (target / CARD_FILE).is_file():
        names = ", ".join(c.name for c in user_cards()) or "none yet"
        raise HeadstartError(f"the zoo at {zoo_root()} has no model '{name}' (yours: {names})")
    shutil.rmtree(target)
    return target
