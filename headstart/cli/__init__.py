"""The `headstart` command: one subcommand per API function, nothing more (common.py: the group and the
shared options; train.py: fit, pretrain, lr-find; use.py: models, rank, advise, evaluate, predict,
export, demo; main.py: the entry point). --json prints the result as JSON on stdout and nothing else
there."""

from .common import cli
from .main import main

__all__ = ["cli", "main"]
