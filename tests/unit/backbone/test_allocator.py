"""The glibc allocator tuning is opt-in (``SUITE_GLIBC_TUNING=1``), CPU runs only, and when it
is on glibc really behaves differently: checked in a fresh process through ``mallinfo2``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from experiments.allocator import _glibc

# In a fresh process: the tuning's return value (twice: it applies once), then one 16 MiB
# malloc. By default glibc serves it with mmap (over its 128 KiB threshold, which rises only
# when such a block is freed); tuned, it comes from the heap, and the heap grows by the 64 MiB
# top pad. After free(), the tuned heap keeps the memory (no trimming).
SCRIPT = r"""
import ctypes, json, sys
from experiments.allocator import keep_freed_memory

class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]

cuda = {"none": None, "cpu": False, "cuda": True}[sys.argv[1]]
default = sys.argv[2] == "1"
applied = [keep_freed_memory(cuda, default), keep_freed_memory(cuda, default)]
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = Mallinfo2
before = libc.mallinfo2()
block = libc.malloc(16 * 2**20)
during = libc.mallinfo2()
libc.free(block)
after = libc.mallinfo2()
print(json.dumps({
    "applied": applied,
    "mmapped": during.hblkhd - before.hblkhd,
    "heap_growth": during.arena - before.arena,
    "heap_kept_after_free": after.arena - before.arena,
}))
"""


def _run(env_value: str | None, cuda: str = "cpu", default: bool = False) -> dict:
    env = dict(os.environ)
    env.pop("SUITE_GLIBC_TUNING", None)
    if env_value is not None:
        env["SUITE_GLIBC_TUNING"] = env_value
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, cuda, "1" if default else "0"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


MIB = 2**20
glibc_only = pytest.mark.skipif(not _glibc() or sys.platform != "linux", reason="glibc only")


@glibc_only
@pytest.mark.parametrize("value", [None, "0", "off"])
def test_off_by_default(value: str | None) -> None:
    result = _run(value)
    assert result["applied"] == [False, False]
    assert result["mmapped"] >= 16 * MIB  # glibc's default: the large block is mmapped


@glibc_only
def test_applied_when_asked_for_and_glibc_keeps_the_memory() -> None:
    result = _run("1")
    assert result["applied"] == [True, True]  # once per process, then the cached answer
    assert result["mmapped"] == 0  # from the heap, not mmap
    assert result["heap_growth"] >= 64 * MIB  # grown by the block and the 64 MiB top pad
    assert result["heap_kept_after_free"] >= 16 * MIB  # not trimmed


@glibc_only
@pytest.mark.parametrize("cuda", ["cuda", "none"])
def test_not_applied_when_cuda_will_be_used(cuda: str) -> None:
    """Never for a CUDA run; ``cuda=None`` asks torch (no CUDA on the test machine: applied)."""
    import torch

    result = _run("1", cuda)
    expect = cuda == "none" and not torch.cuda.is_available()
    assert result["applied"] == [expect, expect]
    assert (result["mmapped"] == 0) is expect


@glibc_only
@pytest.mark.parametrize("value,expect", [(None, True), ("0", False), ("1", True)])
def test_a_command_with_it_on_by_default_can_turn_it_off(value, expect) -> None:
    """``render`` asks with ``default=True``: applied unless ``SUITE_GLIBC_TUNING=0``."""
    result = _run(value, default=True)
    assert result["applied"] == [expect, expect]
    assert (result["mmapped"] == 0) is expect


def test_only_render_asks_for_it_by_default(monkeypatch, capsys) -> None:
    from experiments import allocator
    from experiments.__main__ import cli

    defaults = []
    monkeypatch.setattr(
        allocator, "keep_freed_memory", lambda cuda=None, default=False: defaults.append(default)
    )
    cli(["render"])  # no checkpoint: one error line, after the allocator's turn
    cli(["eval"])
    capsys.readouterr()
    assert defaults == [True, False]
