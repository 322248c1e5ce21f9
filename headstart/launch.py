"""`--processes N`: run the same command in N local processes under torch's elastic launcher
(what `torchrun --standalone` does), so Accelerate finds a DDP world of N.

Multi-GPU and multi-node runs use `accelerate launch` or `torchrun` directly (see the README);
this is the one-machine shortcut.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid

from .runtime import cpu_count


def relaunch(processes: int, argv: list[str]) -> int:
    """Run `headstart <argv without --processes>` in `processes` processes; their exit code."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    args = _without_processes(argv)
    # each process gets its share of the cores (torchrun would pin them to one thread each)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cpu_count() // processes)))
    logging.getLogger("torch.distributed.elastic").setLevel(logging.ERROR)
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=processes, run_id=str(uuid.uuid4()),
        rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.1,
    )
    try:
        elastic_launch(config, sys.executable)("-m", "headstart.cli", *args)
    except ChildFailedError as e:
        codes = [f.exitcode for f in e.failures.values()]
        return 2 if 2 in codes else (codes[0] or 1)
    return 0


def _without_processes(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--processes":
            skip = True
            continue
        if a.startswith("--processes="):
            continue
        out.append(a)
    return out
