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
from pathlib import Path

from ..errors import HeadstartError
from ..fileio import atomic_write_json, sha256_file
from .card import ModelCard, WeightSource

CARD_FILE, WEIGHTS_FILE = "card.json", "model.safetensors"
CARD_FORMAT = "headstart-card/1"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def zoo_root() -> Path:
    if os.environ.get("HEADSTART_ZOO"):
        return Path(os.environ["HEADSTART_ZOO"]).expanduser()
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data_home / "headstart" / "zoo"


def card_from_run(run_dir: str | Path, name: str | None = None) -> ModelCard:
    """The card of a finished image run used as a source model: the run's architecture and
    preprocessing, its weights file read with key_map "run" (body.* is the architecture
    without its classifier; a linear head.fc is the classifier, so LEEP and NCE can use it)."""
    from ..rundir import RUN_FILE, WEIGHTS_FILE as RUN_WEIGHTS, check_record, read_run_metrics, run_info, verified_file

    d = Path(run_dir).expanduser()
    info = run_info(d)
    if info is None:
        raise HeadstartError(f"'{d}' is neither a card folder ({CARD_FILE}) nor a headstart run ({RUN_FILE})")
    if info.get("status") != "finished":
        raise HeadstartError(f"run '{d}' has not finished; continue it with `headstart fit --resume {d}` first")
    check_record(d, info)
    card = ModelCard.from_dict(info["card"])
    if card.modality != "image" or card.architecture in ("transformers", "word-vectors"):
        raise HeadstartError(f"run '{d}' is a text run; only image runs can be source models for now")
    weights = verified_file(d, info, RUN_WEIGHTS)
    head = info.get("head") or {}
    linear = head.get("kind", "linear") == "linear"
    metrics = read_run_metrics(d, info)
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
        if d.is_dir() and (d / CARD_FILE).is_file() and NAME_PATTERN.match(d.name):
            try:
                cards.append(zoo_card(d))
            except HeadstartError:
                continue  # a damaged entry does not hide the rest; `get_card(NAME)` says what is wrong
    return cards


def user_card(name: str) -> ModelCard | None:
    d = zoo_root() / name
    return zoo_card(d) if NAME_PATTERN.match(name) and (d / CARD_FILE).is_file() else None


def zoo_card(d: Path) -> ModelCard:
    card = read_card_folder(d, name=d.name)
    return dataclasses.replace(card, extra=card.extra | {"zoo": str(d)})
