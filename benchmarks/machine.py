"""What every benchmark reports beside its figures: the CPU, the BLAS kernel that ran, and
where its results accumulate."""

from __future__ import annotations

import json
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_name() -> str:
    """The CPU's model name (every speed figure names the machine it came from)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_kernel() -> str:
    """The BLAS libraries loaded, their version, kernel and threads (threadpoolctl)."""
    from threadpoolctl import threadpool_info

    return ", ".join(f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')} "
                     f"×{i.get('num_threads')}" for i in threadpool_info())


def append_result(name: str, results: dict) -> Path:
    """Add one run's results to benchmarks/results/NAME.json (a list, oldest first)."""
    target = RESULTS / f"{name}.json"
    target.parent.mkdir(exist_ok=True)
    history = json.loads(target.read_text()) if target.exists() else []
    target.write_text(json.dumps(history + [results], indent=1))
    return target
