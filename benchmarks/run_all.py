"""Run every CPU benchmark, in an order where each reuses the last one's data (benchmarks/gpu.py
and gpu_text.py run on a CUDA machine, by hand).

    make bench      (or: .venv/bin/python benchmarks/run_all.py)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
ORDER = ["bench_extract.py", "bench_cache.py", "bench_memory.py", "bench_head.py",  # the core issue
         "bench_finetune.py", "bench_strategies.py",  # fine-tuning
         "bench_rank.py", "bench_ranking.py", "bench_auto.py", "bench_advise.py",  # choosing
         "bench_text_embed.py", "bench_text.py",  # text
         "bench_own_source.py", "bench_export.py"]  # your own source model; export and serving


def main() -> int:
    failed = []
    for name in ORDER:
        print(f"== {name}", flush=True)
        if subprocess.run([sys.executable, str(HERE / name)], cwd=HERE).returncode != 0:
            failed.append(name)
    print("all targets met" if not failed else f"targets missed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
