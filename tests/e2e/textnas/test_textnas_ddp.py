"""A real 2-process CPU DDP run (gloo) through the command line and ``preset=trainer/ddp``
(which turns on ``sync_batchnorm``: the masked BatchNorms must keep their forward), checked
against one process.

Lightning's ``ddp`` strategy re-executes ``python -m experiments ...`` for rank 1, which reuses
rank 0's run folder (``SUITE_RUN_DIR``). The datamodule shards validation so that every dev
example is scored by exactly one rank, and the metrics are torchmetrics objects synchronised
over the ranks, so the DDP run's validation numbers must equal a single-process evaluation of
its final checkpoint.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import torch

from experiments.run import evaluate
from tests.e2e.conftest import QUIET, cli_env, python, tiny, tree_hashes

pytestmark = [pytest.mark.ddp, pytest.mark.usefixtures("one_thread")]


def test_two_process_cpu_ddp_matches_single_process_eval(sst_dir, tiny_arch, tmp_path):
    out, cwd = tmp_path / "out", tmp_path / "cwd"
    cwd.mkdir()
    data_before = tree_hashes(sst_dir)
    args = tiny(
        out,
        f"data.root={sst_dir}",
        f"model.architecture={tiny_arch}",
        "preset=trainer/ddp",  # the preset itself: ddp with sync_batchnorm
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.limit_val_batches=null",  # the whole dev set, as the single-process eval sees it
        "data.eval_batch_size=8",  # several validation batches per rank
        # Faithful max pool and BatchNorm see the padding, so logits depend on which texts
        # share a batch; padding every batch to max_length makes them independent of the
        # ranks' batch composition.
        "data.pad_to_max_length=true",
    )
    proc = subprocess.run(
        [python(), "-m", "experiments", "train", "textnas_train_synthetic", *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]

    # one run folder, nothing written by either rank anywhere else
    runs = list((out / "textnas_train_synthetic").iterdir())
    assert len(runs) == 1, runs
    run_dir = runs[0]
    assert [p.name for p in out.iterdir()] == ["textnas_train_synthetic"]
    assert not any(cwd.iterdir()), list(cwd.iterdir())
    assert tree_hashes(sst_dir) == data_before
    assert [p.name for p in (run_dir / "csv").iterdir()] == ["version_0"]
    assert proc.stdout.count("run folder:") == 1 and str(run_dir) in proc.stdout  # rank 0 only

    metrics = json.loads((run_dir / "metrics.json").read_text())["fit"]
    ckpt = torch.load(run_dir / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert len(ckpt["rng_states"]) == 2  # one per rank
    assert ckpt["suite"]["config"]["trainer"]["devices"] == 2
    assert ckpt["suite"]["config"]["trainer"]["sync_batchnorm"] is True
    # 4 batches of 16 per rank (use_distributed_sampler=False: the datamodule shards itself)
    assert metrics["global_step"] == 4

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
    # Accuracy: torchmetrics sums correct/total over the ranks -> exactly the same fraction.
    assert single["val/acc"] == metrics["val/acc"]
    # Loss: Lightning syncs the batch-size-weighted sum and the example count separately, so
    # the DDP value is the global mean too (not a mean of per-rank means); only the order of
    # the float additions differs.
    assert single["val/loss"] == pytest.approx(metrics["val/loss"], abs=1e-5)
