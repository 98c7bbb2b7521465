"""Which wandb mode each Makefile target and each config gives: the demo and the tests offline,
every other target whatever ``WANDB_MODE`` says (unset: online when logged in, else offline
with one line saying so)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from experiments import trainer

REPO = Path(__file__).resolve().parents[3]


def _make(target: str, tmp_path: Path, **env: str) -> str:
    fake = tmp_path / "fakepy"
    fake.write_text('#!/bin/sh\necho "mode=[${WANDB_MODE:-}]"\n')
    fake.chmod(0o755)
    # an up-to-date set-up stamp (newer than pyproject.toml): make must not rerun the set-up
    stamp = tmp_path / "installed"
    stamp.touch()
    # a clean environment: nothing the test run (or an earlier test) exported reaches make
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    done = subprocess.run(
        ["make", "-s", target, f"PY={fake}", f"STAMP={stamp}"],
        cwd=REPO,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return next(line for line in done.stdout.splitlines() if line.startswith("mode="))


@pytest.mark.parametrize("target", ["demo", "test"])
def test_demo_and_tests_log_offline_unless_told(target, tmp_path):
    assert _make(target, tmp_path) == "mode=[offline]"
    assert _make(target, tmp_path, WANDB_MODE="online") == "mode=[online]"


@pytest.mark.parametrize("target", ["train-textnas", "search-alphagan", "train-dualtalker"])
def test_other_targets_follow_the_environment(target, tmp_path):
    assert _make(target, tmp_path) == "mode=[]"
    assert _make(target, tmp_path, WANDB_MODE="disabled") == "mode=[disabled]"


def _cfg(mode: str = "auto"):
    return OmegaConf.create({"logger": {"wandb": {"mode": mode}}})


def test_auto_without_login_is_offline_with_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(trainer, "_has_wandb_key", lambda: False)
    assert trainer.resolve_wandb_mode("auto") == "offline"
    trainer._say_offline(_cfg(), tmp_path)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "not logged in" in lines[0] and "wandb login" in lines[0]


def test_auto_with_login_is_online_and_the_environment_wins(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(trainer, "_has_wandb_key", lambda: True)
    assert trainer.resolve_wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert trainer.resolve_wandb_mode("auto") == "offline"
    trainer._say_offline(_cfg(), tmp_path)  # chosen by the user: nothing to explain
    assert capsys.readouterr().err == ""
