"""A real 2-process CPU DDP run of DualTalker (gloo) through the command line, checked against
one process.

Lightning's ``ddp`` strategy re-executes ``python -m experiments ...`` for rank 1, which reuses
rank 0's run folder. The face datamodule gives every validation sequence to exactly one rank and
LVE/FDD are torchmetrics sums over the ranks, so the DDP run's validation metrics (teacher-forced
loss, autoregressive LVE and FDD of the unseen speaker under all four conditions) must equal a
single-process evaluation of its final checkpoint.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from experiments.run import evaluate
from tests.e2e.conftest import QUIET, cli_env, python, tree_hashes
from tests.helpers.face import synthetic_voca, tiny

pytestmark = [pytest.mark.ddp, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def voca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_voca(tmp_path_factory)


def test_two_process_cpu_ddp_matches_single_process(voca, tmp_path):
    out, cwd = tmp_path / "out", tmp_path / "cwd"
    cwd.mkdir()
    before = tree_hashes(voca)
    args = tiny(out, voca, "trainer.devices=2", "trainer.strategy=ddp", "data.batch_size=2")
    proc = subprocess.run(
        [python(), "-m", "experiments", "train", "dualtalker_synthetic", *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    runs = list((out / "dualtalker_synthetic").iterdir())
    assert len(runs) == 1, runs
    run_dir = runs[0]
    assert not any(cwd.iterdir()) and tree_hashes(voca) == before
    fit = json.loads((run_dir / "metrics.json").read_text())["fit"]
    ckpt = torch.load(run_dir / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert len(ckpt["rng_states"]) == 2 and ckpt["suite"]["config"]["trainer"]["devices"] == 2
    assert fit["global_step"] == 4  # 16 sequences, 8 per rank, batches of 2

    ev = evaluate(
        None,
        [
            f"ckpt={run_dir / 'checkpoints/last.ckpt'}",
            "trainer.devices=1",
            "trainer.strategy=auto",
            f"output_dir={tmp_path / 'eval'}",
            *QUIET,
        ],
    )
    single = ev.metrics["validate"]
    for key in ("val/lve", "val/fdd", "val/loss", "val/rec"):
        assert single[key] == pytest.approx(fit[key], rel=1e-5, abs=1e-12), key
