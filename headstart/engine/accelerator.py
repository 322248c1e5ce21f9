"""The device, precision, processes and trackers of a run: Hugging Face Accelerate, set up once here
for every task. The loop never asks how many processes run it."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from ..errors import HeadstartError
from .config import TRACKERS, TrainConfig


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int, base: int = 1_000_003) -> int:
    """The seed of every generator in one epoch of a run: the run's randomness follows from (seed, epoch)."""
    return seed * base + epoch


def mixed_precision(choice: str, device_type: str) -> str:
    """--precision as Accelerate takes it ("no", "bf16", "fp16"): one policy for every task. `auto` is
    bf16 (fp16 without bf16) on a GPU and fp32 on a CPU (measured on a 2-core CPU: bf16 autocast trains
    EfficientNet-Lite0 no faster than fp32); bf16 or fp16 asked for by name are honoured anywhere."""
    if choice == "fp32":
        return "no"
    if choice in ("bf16", "fp16"):
        return choice
    if device_type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def check_tracker(tracker: str | None) -> None:
    if tracker is not None and tracker not in TRACKERS:
        raise HeadstartError(f"--tracker must be one of {', '.join(TRACKERS)}; got '{tracker}'")
    if tracker == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise HeadstartError("--tracker tensorboard needs the tensorboard package: pip install tensorboard") from None
    if tracker == "mlflow":
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise HeadstartError("--tracker mlflow needs the mlflow package: pip install mlflow-skinny") from None


def make_accelerator(cfg: TrainConfig, run_dir: Path, tracker: str | None, cpu: bool = False):
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration

    check_tracker(tracker)
    device_type = "cpu" if cpu or not torch.cuda.is_available() else "cuda"
    precision = mixed_precision(cfg.precision, device_type)
    _fresh_accelerate_state(precision, cpu)
    return Accelerator(
        cpu=cpu,
        mixed_precision=precision,
        gradient_accumulation_steps=cfg.accumulate,
        # --batch-size is the global batch: split across processes, so N processes compute
        # what one process would; the shuffling seed is shared and set per epoch.
        dataloader_config=DataLoaderConfiguration(split_batches=True, use_seedable_sampler=True, data_seed=cfg.seed),
        log_with=tracker,
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "logs")),
    )


def start_trackers(acc, cfg: TrainConfig, tracker: str | None, on_failure=None) -> None:
    """Start the tracker; its library's own error (configuration, server) becomes one line."""
    if not tracker:
        return
    try:
        acc.init_trackers("headstart", config={k: v for k, v in cfg.to_dict().items() if not isinstance(v, dict)})
    except Exception as e:  # noqa: BLE001 - the tracker library's own errors (its configuration, its server)
        if on_failure is not None:
            on_failure()
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise HeadstartError(f"--tracker {tracker} could not start: {first}") from None


def open_run(acc, out_dir: Path, record: dict | None, cfg: TrainConfig, tracker: str | None) -> None:
    """A new run's folder (`record` given), written by the main process only: whatever --out held goes
    (check_out_dir allowed it: a finished run, or --overwrite) and headstart.json says "training"; then the
    tracker starts. A tracker that cannot start takes the new folder with it."""
    import shutil

    from ..fileio import atomic_write_json
    from ..rundir import RUN_FILE

    fresh = record is not None and acc.is_main_process
    if fresh:
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        atomic_write_json(out_dir / RUN_FILE, record)
    acc.wait_for_everyone()
    start_trackers(acc, cfg, tracker, on_failure=(lambda: shutil.rmtree(out_dir, ignore_errors=True)) if fresh else None)


def _fresh_accelerate_state(precision: str, cpu: bool) -> None:
    """Accelerate keeps one state per process: it refuses an Accelerator with another precision
    than the first one's, and keeps the first one's device. A second fit in the same Python
    process (a notebook, a script comparing bf16 with fp32, or the CPU with the GPU) starts that
    state anew. Under torchrun the distributed part of it (the process group) stays."""
    from accelerate.state import AcceleratorState, PartialState

    if not AcceleratorState._shared_state:
        return
    state = AcceleratorState()
    if state.mixed_precision == precision and cpu == (state.device.type == "cpu"):
        return
    AcceleratorState._reset_state(reset_partial_state=PartialState().num_processes == 1)
