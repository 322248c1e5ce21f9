"""The run folder's files, without torch: names, the record, checks of --out, and writing.

  RUN_DIR/model.safetensors   body.* and head.* tensors of the whole network
  RUN_DIR/headstart.json      card, head, class names, preprocessing, body identity
  RUN_DIR/metrics.json        what training measured

headstart.run builds and loads the network; this module is what commands need before (or
without) torch: `fit` checks --out here before any work, and a linear probe re-fitted on cached
features writes its run from NumPy arrays here.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import HeadstartError
from .fileio import atomic_dir, atomic_write_json
from .runtime import is_main_rank

RUN_FILE, METRICS_FILE, WEIGHTS_FILE = "headstart.json", "metrics.json", "model.safetensors"
RUN_FORMAT = "headstart-run/1"


def run_info(path: str | Path) -> dict[str, Any] | None:
    """The run's headstart.json, or None when `path` holds no headstart run."""
    try:
        info = json.loads((Path(path) / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("format") == RUN_FORMAT else None


def is_run_dir(path: str | Path) -> bool:
    return run_info(path) is not None


def check_out_dir(out: str | Path, overwrite: bool) -> Path:
    """Refuse, before any work, to write over something that is not a finished headstart run."""
    out = Path(out).expanduser()
    if not is_main_rank():  # under a distributed launch the first process checks, and writes, for all
        return out
    if out.exists() and not out.is_dir():
        raise HeadstartError(f"--out '{out}' is a file; give a folder path for the run")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        info = run_info(out)
        if info is None:
            raise HeadstartError(
                f"--out '{out}' exists and is not a headstart run; choose another folder, "
                "or pass --overwrite to replace its contents"
            )
        if info.get("status") == "training":
            raise HeadstartError(
                f"--out '{out}' holds an unfinished run; continue it with `headstart fit --resume {out}`, "
                "or pass --overwrite to start over"
            )
    return out


def run_record(info: dict[str, Any], card: Any, head: Any, classes: tuple[str, ...], body_id: str) -> dict[str, Any]:
    """headstart.json of a finished run: `info` (task, data, strategy, ...) with the card, head, classes,
    preprocessing and body identity that loading it needs."""
    info.update(
        format=RUN_FORMAT, status="finished", headstart=__version__, card=card.to_dict(),
        head=head.to_dict(), classes=list(classes), preprocessing=card.preprocessing.to_dict(),
        body_id=body_id, saved=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    return info


def write_run_files(folder: Path, tensors: dict[str, np.ndarray], metrics: dict[str, Any],
                    record: dict[str, Any]) -> None:
    """The weights, metrics.json, and last headstart.json (a run is finished once it says so), each atomic."""
    from safetensors.numpy import save_file

    tmp = folder / f".{WEIGHTS_FILE}.tmp"
    save_file({k: np.require(v, requirements="C") for k, v in tensors.items()}, str(tmp), metadata={"format": RUN_FORMAT})
    os.replace(tmp, folder / WEIGHTS_FILE)
    atomic_write_json(folder / METRICS_FILE, metrics)
    atomic_write_json(folder / RUN_FILE, record)


def save_run(out: Path, tensors: dict[str, np.ndarray], metrics: dict[str, Any], record: dict[str, Any]) -> None:
    """Write a whole run folder at once: built beside `out`, then swapped in."""
    with atomic_dir(out, replace=True) as tmp:
        write_run_files(tmp, tensors, metrics, record)


def finished_run(run_dir: str | Path) -> tuple[Path, dict[str, Any]]:
    """(folder, headstart.json) of a finished run, or a one-line error saying what the path is instead."""
    d = Path(run_dir).expanduser()
    if d.is_file():
        hint = {".onnx": "an ONNX export: `headstart predict` and headstart.predict take it as it is (headstart.OnnxRun)",
                ".pt": "if it is a TorchScript export, load it with torch.jit.load; here give the run folder it came "
                       "from"}.get(d.suffix.lower(), "give the folder written by `headstart fit`")
        raise HeadstartError(f"'{d}' is a file, not a run folder; {hint}")
    if not d.is_dir():
        raise HeadstartError(f"run folder '{d}' does not exist")
    info = run_info(d)
    if info is None:
        raise HeadstartError(f"'{d}' is not a headstart run (no valid {RUN_FILE}); give a folder written by `headstart fit`")
    if info.get("status") == "training":
        raise HeadstartError(
            f"run '{d}' has not finished (it was stopped or is still training); continue it with "
            f"`headstart fit --resume {d}`"
        )
    return d, info


def stopped_run(run_dir: str | Path) -> tuple[Path, dict[str, Any]]:
    """(folder, headstart.json) of a run that was stopped (--resume), or a one-line error."""
    d = Path(run_dir).expanduser()
    info = run_info(d)
    if info is None:
        raise HeadstartError(f"--resume '{d}' is not a headstart run; give the --out folder of a fit that was stopped")
    if info.get("status") != "training":
        raise HeadstartError(f"--resume '{d}': the run already finished; evaluate it, or fit again with --out")
    return d, info


def read_run_weights(d: Path) -> dict[str, Any]:
    """RUN_DIR/model.safetensors, or a one-line error saying the run is unfinished or damaged."""
    weights = d / WEIGHTS_FILE
    if not weights.is_file():
        raise HeadstartError(f"run '{d}' has no {WEIGHTS_FILE}; the run did not finish, run `headstart fit` again")
    from safetensors.torch import load_file

    try:
        return load_file(str(weights))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for damaged files
        raise HeadstartError(f"run '{d}': {WEIGHTS_FILE} is damaged ({str(e)[:120]}); run `headstart fit` again") from None
