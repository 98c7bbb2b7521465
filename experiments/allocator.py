"""Opt-in tuning of glibc's allocator for training on CPU: keep freed memory in the process.

By default glibc hands large freed blocks straight back to the OS (``mmap`` for blocks over
128 KiB to 32 MiB, heap trimming above 128 KiB free at the top), so a CPU training step can
fault its activations back in page by page. PyTorch's CPU performance guide suggests preloading
jemalloc or tcmalloc for this; raising glibc's own thresholds with ``mallopt(3)`` has the same
effect with nothing to install. ``make bench`` measures what it saves on the TextNAS steps, in
child processes with it off and on (``benchmarks/results/textnas.json``, docs/benchmarks.md).

The cost is that the process's resident memory stays at its peak instead of shrinking between
steps. So for training it is off unless asked for: ``SUITE_GLIBC_TUNING=1``, and then only for
CPU runs (never when CUDA is going to be used, where host memory is not the bottleneck). The
one-shot ``render`` command has it on by default on the CPU (``SUITE_GLIBC_TUNING=0`` turns it
off): wav2vec 2.0's frozen CNN, in chunks whose layer outputs are all under the 32 MiB
threshold, then runs 20-28 % faster (docs/benchmarks.md). It changes process-wide allocator
settings, once, on glibc on Linux.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

ENV_VAR = "SUITE_GLIBC_TUNING"

# mallopt(3) parameter numbers (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum: blocks up to 32 MiB come from the heap
TRIM_THRESHOLD = 2**31 - 1  # never trim the heap top
TOP_PAD = 64 * 1024 * 1024  # grow the heap in 64 MiB steps

_applied: bool | None = None


def glibc_tuning_requested(default: bool = False) -> bool:
    """Whether ``SUITE_GLIBC_TUNING=1`` (also ``true``/``on``/``yes``) asks for the tuning;
    ``default`` when the variable is not set."""
    value = os.environ.get(ENV_VAR)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "on", "yes")


def keep_freed_memory(cuda: bool | None = None, default: bool = False) -> bool:
    """Apply the tuning if requested (:func:`glibc_tuning_requested`, ``default`` when
    ``SUITE_GLIBC_TUNING`` is not set) and the run is a CPU run; once per process. True if the
    settings are in effect (glibc on Linux only).

    ``cuda``: whether the run will use CUDA; ``None`` takes ``torch.cuda.is_available()``
    (asked only when the tuning is requested)."""
    global _applied
    if _applied is not None:
        return _applied
    if not glibc_tuning_requested(default):
        return False
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    if cuda:
        return False
    _applied = _apply()
    return _applied


def _apply() -> bool:
    if sys.platform != "linux" or not _glibc():  # musl's mallopt does nothing
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return all(
        mallopt(param, value) == 1
        for param, value in (
            (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
            (_M_TOP_PAD, TOP_PAD),
        )
    )


def _glibc() -> bool:
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):
        return False
