"""What machine a benchmark ran on, and peak memory, for the JSON reports."""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from collections.abc import Callable

import torch


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_has(flag: str) -> bool:
    """Whether /proc/cpuinfo lists ``flag`` (e.g. avx512f: the same VM name can come with or
    without AVX-512, which changes which kernels are fast)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return flag in line.split(":", 1)[1].split()
    except OSError:
        pass
    return False


def describe_machine(threads: int | None = None) -> dict:
    info = {
        "cpu": cpu_model(),
        "avx512f": cpu_has("avx512f"),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads if threads is not None else torch.get_num_threads(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def reset_peak_memory(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb(device: str) -> float:
    """Peak CUDA memory allocated, or the process's peak resident set size on CPU."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def resident_peak_mb(pid: int | str = "self") -> float | None:
    """A process's peak resident set size (VmHWM in /proc/PID/status) in MiB; None where /proc
    does not say (not Linux, or the process has ended). Readable for a child still running,
    where ``getrusage(RUSAGE_CHILDREN)`` only knows the largest child that has ended."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError):
        pass
    return None


def process_cpu_seconds(pid: int | str = "self") -> float | None:
    """User + system CPU seconds of a running process (fields 14 and 15 of /proc/PID/stat);
    None where /proc does not say."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after the command name
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def reset_resident_peak() -> bool:
    """Start this process's VmHWM again from its current resident set (Linux: ``5`` to
    /proc/self/clear_refs), so a peak can be read per case; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def time_steps(
    step: Callable[[], object], warmup: int, steps: int, device: str = "cpu"
) -> list[float]:
    """Wall seconds of each of ``steps`` calls of ``step`` after ``warmup`` untimed ones
    (CUDA synchronised around each timed call)."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times
