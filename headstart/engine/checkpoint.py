"""RUN_DIR/checkpoint: written atomically after every epoch and phase, read by --resume.

    weights.safetensors   the model now
    best.safetensors      the model at the best validation so far
    optimizer.pt          optimizer and scheduler inside a phase (tensors and plain data only:
                          read with weights_only=True, never unpickled as code)
    state.json            headstart.engine.state.RunState
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ..errors import HeadstartError
from ..fileio import atomic_dir, atomic_write_json

CHECKPOINT = "checkpoint"


class Checkpoint:
    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir / CHECKPOINT

    def exists(self) -> bool:
        return (self.dir / "state.json").is_file()

    def save(self, weights: dict[str, Any], best: bool, state: dict[str, Any], optimizer=None, scheduler=None) -> None:
        """weights: name -> CPU tensor. `best`: these weights are the best so far (else the last best is kept)."""
        import torch
        from safetensors.torch import save_file

        with atomic_dir(self.dir, replace=True) as tmp:
            save_file(weights, str(tmp / "weights.safetensors"))
            if best:
                save_file(weights, str(tmp / "best.safetensors"))
            elif (self.dir / "best.safetensors").is_file():
                shutil.copy2(self.dir / "best.safetensors", tmp / "best.safetensors")
            if optimizer is not None:
                torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
                           tmp / "optimizer.pt")
            atomic_write_json(tmp / "state.json", state)

    def state(self) -> dict[str, Any]:
        return json.loads((self.dir / "state.json").read_text())

    def weights(self) -> dict[str, Any]:
        from safetensors.torch import load_file

        return load_file(str(self.dir / "weights.safetensors"))

    def best(self) -> dict[str, Any] | None:
        from safetensors.torch import load_file

        path = self.dir / "best.safetensors"
        return load_file(str(path)) if path.is_file() else None

    def load_optimizer(self, optimizer, scheduler) -> None:
        import torch

        path = self.dir / "optimizer.pt"
        if not path.is_file():
            raise HeadstartError(f"checkpoint {self.dir} has no optimizer state; the run cannot be resumed exactly")
        saved = torch.load(path, map_location="cpu", weights_only=True)
        try:
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
        except (ValueError, KeyError, TypeError, RuntimeError) as e:  # another run's groups, another version's layout
            first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise HeadstartError(f"checkpoint {self.dir}: its optimizer state does not fit this run's parameter groups "
                                 f"({first}); the run cannot be resumed exactly: start it again with --out") from None

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
