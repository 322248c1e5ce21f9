"""Where models run: device choice and CPU thread settings (torch is imported only to pick a device)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .errors import HeadstartError

if TYPE_CHECKING:
    import torch


def pick_device(name: str | None = None) -> torch.device:
    """The given device, else CUDA when present, else Apple's MPS, else the CPU."""
    import torch

    if name:
        try:
            dev = torch.device(name)
        except RuntimeError:
            raise HeadstartError(f"--device '{name}' is not a device name (cpu, cuda, cuda:1, mps)") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise HeadstartError(f"--device {name}: no CUDA GPU is visible here; use --device cpu")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_workers(device: torch.device) -> int:
    """DataLoader workers for decoding: leave the cores to the model on a small CPU machine."""
    n = cpu_count()
    if device.type == "cpu":
        return 1 if n <= 4 else min(4, n // 4)
    return min(8, max(1, n - 1))


def default_batch_size(device: torch.device) -> int:
    # On CPUs small batches stay in cache and run faster per image; GPUs want them large.
    return 16 if device.type == "cpu" else 128


def is_main_rank() -> bool:
    """False in the second and later processes of a torchrun / accelerate launch."""
    return int(os.environ.get("RANK", "0")) == 0



def release_free_memory() -> None:
    """Hand memory that Python and the C allocator hold free back to the system, just before
    DataLoader workers are forked. Pages shared with a forked child are copied on this
    process's first write to each; without this, the first training epoch after a fork ran at
    two thirds of its speed on a CPU (measured: EfficientNet-Lite0, 16 images per batch)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to trim this way
        pass
