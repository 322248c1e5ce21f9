"""The model zoo: cards, weight sources, building networks."""

from .build import build_architecture, load_network, normalize_architecture
from .builtin import BUILTIN_CARDS
from .card import ModelCard, Preprocessing, WeightSource
from .registry import get_card, list_cards
from .weights import is_installed, locate, read_state_dict

__all__ = [
    "BUILTIN_CARDS",
    "ModelCard",
    "Preprocessing",
    "WeightSource",
    "build_architecture",
    "get_card",
    "is_installed",
    "list_cards",
    "load_network",
    "locate",
    "normalize_architecture",
    "read_state_dict",
]
