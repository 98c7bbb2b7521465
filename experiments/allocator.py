"""Keep freed memory in the process: glibc's allocator tuned for training on CPU.

By default glibc hands large freed blocks straight back to the OS (``mmap`` for blocks over
128 KiB-32 MiB, heap trimming above 128 KiB free at the top), so each training step faults its
activations back in page by page: about 25,000 minor page faults per TextNAS supernet step at
C=256 (100 MB of fresh pages, zeroed by the kernel). PyTorch's CPU performance guide suggests
preloading jemalloc or tcmalloc for this; raising glibc's own thresholds with ``mallopt(3)`` gets
the same effect with nothing to install. Measured with ``make bench`` (README.md, "Speed"):
faults fall to under 1,000 per step and the step gets about 5 % faster.

The cost is that the process's resident memory stays at its peak instead of shrinking between
steps, which is what a training process does anyway. ``SUITE_GLIBC_TUNING=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt(3) parameter numbers (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum: blocks up to 32 MiB come from the heap
TRIM_THRESHOLD = 2**31 - 1  # never trim the heap top
TOP_PAD = 64 * 1024 * 1024  # grow the heap in 64 MiB steps

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the settings once per process; True if they are in effect (glibc on Linux)."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if sys.platform != "linux" or os.environ.get("SUITE_GLIBC_TUNING", "1") == "0":
        return False
    if not _glibc():  # musl's mallopt does nothing
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = all(
        mallopt(param, value) == 1
        for param, value in (
            (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
            (_M_TOP_PAD, TOP_PAD),
        )
    )
    return _applied


def _glibc() -> bool:
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):
        return False
