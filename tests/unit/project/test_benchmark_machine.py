"""The benchmarks record the machine they ran on (benchmarks/machine.py), so that figures
from different runs can be compared."""

from __future__ import annotations

from pathlib import Path

from benchmarks.machine import calibration_ns, cpuinfo, describe, summary

X86 = """processor\t: 0
model name\t: Example CPU @ 2.0GHz
flags\t\t: fpu sse2 avx2 avx512f amx_tile
processor\t: 1
model name\t: Example CPU @ 2.0GHz
flags\t\t: fpu sse2 avx2 avx512f amx_tile
"""
ARM = "processor\t: 0\nFeatures\t: fp asimd sve\nCPU part\t: 0xd0c\n"


def test_the_cpu_and_its_kernel_relevant_features_are_read(tmp_path: Path) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(X86, encoding="utf-8")
    assert cpuinfo(path) == ("Example CPU @ 2.0GHz", {"fpu", "sse2", "avx2", "avx512f",
                                                      "amx_tile"})
    path.write_text(ARM, encoding="utf-8")
    model, flags = cpuinfo(path)
    assert "asimd" in flags and "sve" in flags and model  # Arm names no model: the arch
    assert cpuinfo(tmp_path / "missing")[1] == set()


def test_a_run_records_the_machine_in_one_line() -> None:
    machine = describe()
    assert machine["cores"] >= 1 and machine["calibration_ns"] > 0
    assert set(machine["isa"]) <= {"avx2", "avx512f", "avx512_vnni", "avx512_bf16",
                                   "amx_tile", "amx_int8", "asimd", "sve"}
    line = summary(machine)
    assert line.startswith("machine: ") and f"{machine['cores']} cores" in line
    assert "numpy" in line  # an installed library is named with its version


def test_the_calibration_is_a_positive_time_per_loop() -> None:
    assert calibration_ns(repeats=1, number=1000) > 0
