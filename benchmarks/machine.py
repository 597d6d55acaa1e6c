"""What machine a benchmark ran on, printed first and kept with the results.

Figures from different runs are only comparable on the same kind of machine at the same
speed, and these machines change under us: the same code measured a query embedding at
4.5 ms one day and 13.8 ms the next, and ONNX Runtime's document throughput against
PyTorch's went from 1.9x to 0.9x between those two runs (single-threaded, the two were
at parity on the second machine's AVX-512 CPU). So every run records the CPU, the
instruction sets the embedding libraries choose their kernels by, the load, the library
versions, and one calibration figure (a fixed pure-Python loop) that says how fast this
interpreter runs here right now. Standard library only.
"""

from __future__ import annotations

import os
import platform
import statistics
import timeit
from importlib import metadata
from pathlib import Path
from typing import Any

ISA = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "asimd",
       "sve")
"""CPU features the math kernels dispatch on (oneDNN/MKL for PyTorch, MLAS for ONNX Runtime)."""
LIBRARIES = ("onnxruntime", "torch", "langgraph", "faiss-cpu", "numpy")


def cpuinfo(path: Path = Path("/proc/cpuinfo")) -> tuple[str, set[str]]:
    """The CPU's model name and feature flags from /proc/cpuinfo (Linux; "Features" on Arm);
    else the platform's processor string and no flags."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or platform.machine(), set()
    model, flags = "", set[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model or platform.machine(), flags


def calibration_ns(repeats: int = 5, number: int = 200_000) -> float:
    """Nanoseconds per `sum(range(10))`, the median of `repeats` timings: a fixed amount of
    interpreter work, to compare this run's speed with another's (a ratio of two runs'
    figures is meaningful; the figure alone is not)."""
    times = timeit.repeat("sum(range(10))", repeat=repeats, number=number)
    return statistics.median(times) / number * 1e9


def describe() -> dict[str, Any]:
    model, flags = cpuinfo()
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {"cpu": model, "cores": cores, "isa": [f for f in ISA if f in flags],
            "load_average": load, "python": platform.python_version(),
            "libraries": versions, "calibration_ns": round(calibration_ns(), 1)}


def summary(machine: dict[str, Any]) -> str:
    """One line for the top of a run's output."""
    libraries = ", ".join(f"{k} {v}" for k, v in machine["libraries"].items() if v)
    load = " ".join(str(x) for x in machine["load_average"] or ["n/a"])
    return (f"machine: {machine['cpu']}, {machine['cores']} cores "
            f"[{' '.join(machine['isa']) or 'no listed ISA extensions'}]; load average {load}; "
            f"python {machine['python']}, {libraries}; calibration "
            f"{machine['calibration_ns']:.0f} ns per sum(range(10)) (lower is faster)")
