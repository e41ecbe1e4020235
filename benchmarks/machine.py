"""One line describing the machine a benchmark ran on (CPU, cores, Python, load), for BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe(*extras: str) -> str:
    """E.g. ``AMD EPYC, 2 logical CPUs, torch 2.14.1, Python 3.11.7; load average 1.2, ...``."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    parts = [cpu_model(), f"{os.cpu_count()} logical CPUs", *extras]
    return f"{', '.join(parts)}, Python {platform.python_version()}; load average {load}"
