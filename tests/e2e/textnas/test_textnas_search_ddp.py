"""A real 2-process CPU DDP search (gloo) through the command line.

Both ranks must sample the same architectures (one generator seeded alike on every rank), the
unsampled ops leave parameters without gradient (the system asks for unused-parameter search, so
the preset's plain ``ddp`` runs as ``ddp_find_unused_parameters_true``; its ``sync_batchnorm``
keeps the masked BatchNorms), and rank 0 alone derives and writes the architecture files.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import torch

from search_spaces.text import Architecture
from tests.e2e.conftest import cli_env, python, tree_hashes
from tests.e2e.textnas.test_textnas_search import _search_overrides

pytestmark = [pytest.mark.ddp, pytest.mark.usefixtures("one_thread")]


def test_two_process_cpu_search_samples_alike_on_both_ranks(sst_dir, tmp_path):
    out, cwd = tmp_path / "out", tmp_path / "cwd"
    cwd.mkdir()
    data_before = tree_hashes(sst_dir)
    args = _search_overrides(
        out,
        sst_dir,
        "preset=trainer/ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
    )
    proc = subprocess.run(
        [python(), "-m", "experiments", "train", "textnas_search_synthetic", *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    runs = list((out / "textnas_search_synthetic").iterdir())
    assert len(runs) == 1, runs
    run_dir = runs[0]
    assert not any(cwd.iterdir()) and tree_hashes(sst_dir) == data_before
    for name in ("architecture.yaml", "candidates.yaml", "architecture.png"):
        assert (run_dir / name).is_file(), name
    Architecture.load(run_dir / "architecture.yaml")

    ckpt = torch.load(run_dir / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    states = ckpt["textnas_search"]["arch_generator_ranks"]
    assert len(states) == 2 and torch.equal(states[0], states[1])  # same architecture stream
    # The controller was updated on both ranks (rewards averaged over ranks) and stayed equal.
    controllers = ckpt["textnas_search"]["controller_ranks"]
    assert len(controllers) == 2 and torch.equal(controllers[0], controllers[1])
    assert int(ckpt["state_dict"]["child_step"]) == 6  # 3 batches per rank and epoch, 2 epochs
    assert int(ckpt["state_dict"]["controller_step"]) == 4
    metrics = json.loads((run_dir / "metrics.json").read_text())["fit"]
    assert 0.0 <= metrics["search/sample_val_acc"] <= 1.0
