"""Checkpoints are read with ``weights_only=True``: a file that would run code is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from experiments.checkpoints import load_checkpoint, suite_meta
from experiments.config import ConfigError


class RunsCode:
    """Unpickling this calls ``os.system``: what a hostile checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _hostile_checkpoint(path: Path, marker: Path) -> Path:
    torch.save(
        {
            "state_dict": {},
            "suite": {"experiment": "textnas_train_synthetic"},
            "payload": RunsCode(marker),
        },
        path,
    )
    return path


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = _hostile_checkpoint(tmp_path / "evil.ckpt", marker)
    with pytest.raises(ConfigError, match="refusing to unpickle it"):
        load_checkpoint(ckpt)
    assert not marker.exists()
    # the same file *would* run code with full unpickling: the test proves something
    torch.load(ckpt, weights_only=False)
    assert marker.exists()


def test_eval_of_a_hostile_checkpoint_exits_2_with_one_line(tmp_path, capsys):
    from experiments.__main__ import cli

    marker = tmp_path / "pwned"
    ckpt = _hostile_checkpoint(tmp_path / "evil.ckpt", marker)
    assert cli(["eval", f"ckpt={ckpt}", f"output_dir={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: ckpt: checkpoint {ckpt} holds") and "refusing to unpickle" in err
    assert len(err.strip().splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_plain_checkpoints_load_and_metadata_is_checked(tmp_path):
    path = tmp_path / "plain.ckpt"
    torch.save(
        {
            "state_dict": {"w": torch.ones(2)},
            "suite": {"experiment": "a", "system": "s"},
            "rng": (3, (1, 2), None),
            "paths": ["x"],
        },
        path,
    )
    ckpt = load_checkpoint(path)
    assert torch.equal(ckpt["state_dict"]["w"], torch.ones(2))
    assert suite_meta(ckpt, path, "a")["system"] == "s"
    with pytest.raises(ConfigError, match="written by experiment 'a', not 'b'"):
        suite_meta(ckpt, path, "b")
    with pytest.raises(ConfigError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"\x00not a checkpoint")
    with pytest.raises(ConfigError, match="is not a readable checkpoint: it is not a PyTorch"):
        load_checkpoint(tmp_path / "junk.ckpt")
