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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import HeadstartError
from .fileio import (atomic_dir, atomic_write_json, check_writable, default_mode, disk_room, hold_lock, release_lock,
                     sha256_file)
from .runtime import is_main_rank
from .schemas import RUN, STOPPED, check

RUN_FILE, METRICS_FILE, WEIGHTS_FILE = "headstart.json", "metrics.json", "model.safetensors"
RUN_FORMAT = "headstart-run/1"
FILES_KEY = "files"  # headstart.json: the sha256 of every other file of the run


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
    check_writable(out)
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
    hold_lock(out)  # two fits given the same --out at once: the second is refused here
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


def write_run_files(folder: Path, write_weights: Callable[[Path], None], metrics: dict[str, Any],
                    record: dict[str, Any], run_dir: Path | None = None) -> None:
    """The weights (`write_weights(path)` writes them), metrics.json, and last headstart.json, each atomic:
    a run is finished once headstart.json says so, and it records the sha256 of the other two, which every
    reader checks (verified_file). `run_dir`: the folder a user knows, where `folder` is its temporary copy."""
    tmp = folder / f".{WEIGHTS_FILE}.tmp"
    try:
        with disk_room((run_dir or folder) / WEIGHTS_FILE, getattr(write_weights, "nbytes", None)):
            write_weights(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    default_mode(tmp)  # safetensors writes 0600; the run's JSON files have the umask's mode
    os.replace(tmp, folder / WEIGHTS_FILE)
    atomic_write_json(folder / METRICS_FILE, metrics)
    record[FILES_KEY] = {name: sha256_file(folder / name) for name in (WEIGHTS_FILE, METRICS_FILE)}
    atomic_write_json(folder / RUN_FILE, record)


def numpy_weights(tensors: dict[str, np.ndarray]) -> Callable[[Path], None]:
    """write_run_files' weights from NumPy arrays (a head re-fitted on cached features, without torch)."""
    def write(path: Path) -> None:
        from safetensors.numpy import save_file

        save_file({k: np.require(v, requirements="C") for k, v in tensors.items()}, str(path),
                  metadata={"format": RUN_FORMAT})
    write.nbytes = sum(v.nbytes for v in tensors.values())  # type: ignore[attr-defined]  # said if the disk is full
    return write


def torch_weights(model: Any) -> Callable[[Path], None]:
    """write_run_files' weights from a torch module's state."""
    def write(path: Path) -> None:
        from safetensors.torch import save_file

        save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(path),
                  metadata={"format": RUN_FORMAT})
    write.nbytes = sum(v.numel() * v.element_size() for v in model.state_dict().values())  # type: ignore[attr-defined]
    return write


def save_run(out: Path, tensors: dict[str, np.ndarray], metrics: dict[str, Any], record: dict[str, Any]) -> None:
    """Write a whole run folder at once: built beside `out`, then swapped in."""
    with atomic_dir(out, replace=True) as tmp:
        write_run_files(tmp, numpy_weights(tensors), metrics, record, run_dir=out)
    release_lock(out)


def verified_file(d: Path, info: dict[str, Any], name: str) -> Path:
    """RUN_DIR/name, checked against the sha256 headstart.json recorded when the run was written (runs of
    headstart 0.2 recorded none): a file changed or damaged since is one line, never a wrong answer."""
    path = d / name
    if not path.is_file():
        raise HeadstartError(f"run '{d}' has no {name}; the run did not finish, run `headstart fit` again")
    expected = (info.get(FILES_KEY) or {}).get(name) if isinstance(info.get(FILES_KEY), dict) else None
    if expected is not None and sha256_file(path) != expected:
        raise HeadstartError(f"run '{d}': {name} is damaged or was changed after the run was written (its sha256 is "
                             f"not the one {RUN_FILE} recorded); run `headstart fit` again, or restore the file")
    return path


def read_run_metrics(d: Path, info: dict[str, Any]) -> dict[str, Any]:
    """RUN_DIR/metrics.json, checked (verified_file); {} for a run without one."""
    if not (d / METRICS_FILE).is_file() and FILES_KEY not in info:
        return {}
    try:
        metrics = json.loads(verified_file(d, info, METRICS_FILE).read_text())
    except (OSError, ValueError) as e:
        raise HeadstartError(f"run '{d}': {METRICS_FILE} cannot be read ({str(e)[:120]}); run `headstart fit` "
                             "again") from None
    return metrics if isinstance(metrics, dict) else {}


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
    check_record(d, info)
    return d, info


def check_record(d: Path, info: dict[str, Any]) -> None:
    """A finished run's headstart.json has every field loading it reads, of the right type (schemas.RUN)."""
    check(info, RUN, f"run '{d}': {RUN_FILE}", "it was edited or damaged: restore it, or run `headstart fit` again")


def stopped_run(run_dir: str | Path) -> tuple[Path, dict[str, Any]]:
    """(folder, headstart.json) of a run that was stopped (--resume), or a one-line error."""
    d = Path(run_dir).expanduser()
    info = run_info(d)
    if info is None:
        raise HeadstartError(f"--resume '{d}' is not a headstart run; give the --out folder of a fit that was stopped")
    if info.get("status") != "training":
        raise HeadstartError(f"--resume '{d}': the run already finished; evaluate it, or fit again with --out")
    check(info, STOPPED, f"run '{d}': {RUN_FILE}", "it was edited or damaged: restore it, or start the run again "
          "with --out")
    if is_main_rank():  # two resumes of one run: the second is refused here (api.resume lets go)
        hold_lock(d, "--resume")
    return d, info


def read_run_weights(d: Path, info: dict[str, Any]) -> dict[str, Any]:
    """RUN_DIR/model.safetensors, checked (verified_file), or a one-line error saying the run is unfinished or
    damaged."""
    weights = verified_file(d, info, WEIGHTS_FILE)
    from safetensors.torch import load_file

    try:
        return load_file(str(weights))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for damaged files
        raise HeadstartError(f"run '{d}': {WEIGHTS_FILE} is damaged ({str(e)[:120]}); run `headstart fit` again") from None
