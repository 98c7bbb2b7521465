"""Shared test settings: no W&B network, a clean suite environment, the ``gpu`` marker."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _suite_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """W&B disabled and silent; no run folder, config path or debug flag leaking in."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``gpu`` when CUDA is not available."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
