"""Shared test settings: no W&B network, a clean suite environment, the ``gpu`` marker, and the
``one_thread`` fixture for tests of tiny networks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _suite_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """W&B disabled and silent; no run folder, config path or debug flag leaking in; glibc's
    allocator left as it is (``render`` would tune the whole test process: allocator tests set
    the variable themselves)."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("SUITE_GLIBC_TUNING", "0")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    for var in (
        "SUITE_RUN_DIR",
        "SUITE_CONFIG_PATH",
        "SUITE_DEBUG",
        "WANDB_API_KEY",
        "LOCAL_RANK",
        "RANK",
    ):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for the module's runs.

    The networks here are tiny; with 2 threads on a 2-core machine that is also running
    something else, every small op waits for the busy core (measured: the released
    architecture at C=32 took 3.6 s per training step with 2 threads and a competing
    process, 0.018 s with 1 thread).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``gpu`` when CUDA is not available."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
