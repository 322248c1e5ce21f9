"""RUN_DIR/checkpoint: written atomically after every epoch and phase, read by --resume.

    weights.safetensors   the model now
    best.safetensors      the model at the best validation so far
    optimizer.pt          optimizer and scheduler inside a phase (tensors and plain data only:
                          read with weights_only=True, never unpickled as code)
    state.json            headstart.engine.state.RunState
    manifest.json         written last: the sha256 of each file above, checked before any is read

The one before it stays as RUN_DIR/checkpoint.previous: a checkpoint found damaged on --resume gives
way to the previous one (one epoch more to train), and with both damaged the run says so in one line.
A new checkpoint is built as RUN_DIR/checkpoint.next, then rotated in (next -> current -> previous);
a process killed between the renames leaves folders that reading still puts in the right order.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from ..console import log
from ..errors import HeadstartError
from ..fileio import atomic_dir, atomic_write_json, default_mode, disk_room, sha256_file

CHECKPOINT = "checkpoint"
MANIFEST = "manifest.json"


class Checkpoint:
    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir / CHECKPOINT
        self.next = run_dir / f"{CHECKPOINT}.next"
        self.previous = run_dir / f"{CHECKPOINT}.previous"
        self.read_from: Path | None = None  # the folder --resume reads (chosen once, by choose())

    def _folders(self) -> list[Path]:
        """Newest first: a complete `next` that was not rotated in yet, the current one, the previous one."""
        return [d for d in (self.next, self.dir, self.previous) if (d / "state.json").is_file()]

    def exists(self) -> bool:
        return bool(self._folders())

    def save(self, weights: dict[str, Any], best: bool, state: dict[str, Any], optimizer=None, scheduler=None) -> None:
        """weights: name -> CPU tensor. `best`: these weights are the best so far (else the last best is kept)."""
        import torch
        from safetensors.torch import save_file

        last = self.read_from or self.dir  # the checkpoint this run last wrote or resumed from
        size = sum(t.numel() * t.element_size() for t in weights.values()) * (3 if optimizer is not None else 2)
        with disk_room(self.next, size), atomic_dir(self.next, replace=True) as tmp:
            save_file(weights, str(tmp / "weights.safetensors"))
            if best:
                save_file(weights, str(tmp / "best.safetensors"))
            elif (last / "best.safetensors").is_file():
                shutil.copy2(last / "best.safetensors", tmp / "best.safetensors")
            if optimizer is not None:
                torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
                           tmp / "optimizer.pt")
            atomic_write_json(tmp / "state.json", state)
            for p in tmp.iterdir():
                default_mode(p)  # safetensors and torch.save write 0600; the JSON files have the umask's mode
            atomic_write_json(tmp / MANIFEST, {p.name: sha256_file(p) for p in sorted(tmp.iterdir())})
        if self.dir.is_dir() and last == self.previous:  # resumed past a damaged current one: it goes
            shutil.rmtree(self.dir)
        elif self.dir.is_dir():
            shutil.rmtree(self.previous, ignore_errors=True)
            os.replace(self.dir, self.previous)
        os.replace(self.next, self.dir)
        self.read_from = self.dir

    def damage(self, folder: Path) -> str | None:
        """What is wrong with `folder` (a file missing or changed), or None. A checkpoint of headstart 0.2 has no
        manifest: it is read as it is (its files' own errors are still one line)."""
        manifest = folder / MANIFEST
        if not manifest.is_file():
            return None if (folder / "state.json").is_file() else f"{folder.name}/state.json is missing"
        try:
            expected = json.loads(manifest.read_text())
        except (OSError, ValueError):
            return f"{folder.name}/{MANIFEST} cannot be read"
        if not isinstance(expected, dict):
            return f"{folder.name}/{MANIFEST} is not a manifest"
        for name, digest in expected.items():
            path = folder / str(name)
            if not path.is_file():
                return f"{folder.name}/{name} is missing"
            if sha256_file(path) != digest:
                return f"{folder.name}/{name} is damaged (its sha256 differs from the manifest's)"
        return None

    def choose(self, say: bool = True) -> Path:
        """The newest intact checkpoint, for --resume; a damaged newer one is skipped (and said, with `say`)."""
        problems: list[str] = []
        for folder in self._folders():
            wrong = self.damage(folder)
            if wrong is None:
                if problems and say:
                    log(f"checkpoint: {'; '.join(problems)}: resuming from {folder} instead")
                self.read_from = folder
                return folder
            problems.append(wrong)
        if not problems:
            raise HeadstartError(f"{self.dir} holds no checkpoint; start the run again with --out")
        raise HeadstartError(f"the run's checkpoints are damaged ({'; '.join(problems)}); the run cannot be resumed: "
                             f"start it again with --out (or --overwrite)")

    def _folder(self) -> Path:
        return self.read_from or self.choose()

    def state(self) -> dict[str, Any]:
        path = self._folder() / "state.json"
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise HeadstartError(f"checkpoint {path} cannot be read ({str(e)[:100]}); start the run again with --out") \
                from None
        if not isinstance(state, dict):
            raise HeadstartError(f"checkpoint {path} is not a run state; start the run again with --out")
        return state

    def _tensors(self, name: str) -> dict[str, Any] | None:
        from safetensors.torch import load_file

        path = self._folder() / name
        if not path.is_file():
            return None
        try:
            return load_file(str(path))
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for damaged files
            raise HeadstartError(f"checkpoint {path} is damaged ({str(e)[:100]}); start the run again with --out") \
                from None

    def weights(self) -> dict[str, Any]:
        weights = self._tensors("weights.safetensors")
        if weights is None:
            raise HeadstartError(f"checkpoint {self._folder()} has no weights; start the run again with --out")
        return weights

    def best(self) -> dict[str, Any] | None:
        """The best validation's weights, or None (no validation, or a run that writes no checkpoints)."""
        return self._tensors("best.safetensors") if self.read_from or self.exists() else None

    def load_optimizer(self, optimizer, scheduler) -> None:
        import pickle

        import torch

        path = self._folder() / "optimizer.pt"
        if not path.is_file():
            raise HeadstartError(f"checkpoint {path.parent} has no optimizer state; the run cannot be resumed exactly")
        try:
            with warnings.catch_warnings():  # torch warns about the pickle protocol of a file it then refuses
                warnings.simplefilter("ignore")
                saved = torch.load(path, map_location="cpu", weights_only=True)
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
        except pickle.UnpicklingError:  # weights_only refused something that is not tensors and plain data
            raise HeadstartError(f"checkpoint {path} holds more than tensors and plain data (refused, not run); start "
                                 "the run again with --out") from None
        except (ValueError, KeyError, TypeError, RuntimeError, EOFError) as e:  # damaged, or another run's groups
            first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise HeadstartError(f"checkpoint {path}: its optimizer state does not fit this run's parameter groups "
                                 f"({first}); the run cannot be resumed exactly: start it again with --out") from None

    def remove(self) -> None:
        for folder in (self.next, self.dir, self.previous):
            shutil.rmtree(folder, ignore_errors=True)
