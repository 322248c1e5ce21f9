"""Run every benchmark of the core issue, in an order where each reuses the last one's data.

    make bench      (or: .venv/bin/python benchmarks/run_all.py)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
ORDER = ["bench_extract.py", "bench_cache.py", "bench_memory.py", "bench_head.py"]


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
