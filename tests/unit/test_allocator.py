"""The glibc allocator settings apply once per process, and can be turned off."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from experiments.allocator import _glibc

SCRIPT = "from experiments.allocator import keep_freed_memory as k; print(k(), k())"


def _run(env_value: str | None) -> str:
    env = dict(os.environ)
    env.pop("SUITE_GLIBC_TUNING", None)
    if env_value is not None:
        env["SUITE_GLIBC_TUNING"] = env_value
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                         check=True)  # fmt: skip
    return out.stdout.strip()


@pytest.mark.skipif(not _glibc(), reason="glibc only")
def test_applies_on_glibc_and_is_idempotent() -> None:
    assert _run(None) == "True True"


def test_can_be_turned_off() -> None:
    assert _run("0") == "False False"
