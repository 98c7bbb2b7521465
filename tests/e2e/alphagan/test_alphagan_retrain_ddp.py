"""A real 2-process CPU DDP retraining (gloo) through the entry point's ``train``.

Each rank draws its own training noise, yet G and its EMA stay identical on both ranks; the
evaluation's samples are sharded across the ranks (fixed seeded chunks) and reduced by the
metric, so the FID the DDP run logged equals a one-process ``eval`` of the same checkpoint on
the same number of samples.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from experiments.run import evaluate
from tests.e2e.alphagan.test_alphagan_retrain import tiny_retrain
from tests.e2e.alphagan.test_alphagan_search import gan_data  # noqa: F401 (fixture)
from tests.e2e.conftest import cli_env, python

pytestmark = [pytest.mark.ddp]


def test_two_process_retrain_shards_scoring_and_keeps_g_equal(gan_data, tmp_path) -> None:  # noqa: F811
    out, cwd, ranks = tmp_path / "out", tmp_path / "cwd", tmp_path / "ranks"
    cwd.mkdir()
    ranks.mkdir()
    args = tiny_retrain(
        out,
        gan_data,
        "trainer.strategy=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "train.g_iters=4",
    )
    proc = subprocess.run(
        [python(), "-m", "tests.helpers.alphagan_retrain_ddp_run", str(ranks), *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    (run_dir,) = list((out / "alphagan_train_synthetic").iterdir())
    state = [torch.load(ranks / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert torch.equal(state[0]["g"], state[1]["g"])
    assert torch.equal(state[0]["ema"], state[1]["ema"])
    assert not torch.equal(state[0]["noise"], state[1]["noise"])
    logged = json.loads((run_dir / "metrics.json").read_text())["fit"]["val/fid_standin_40"]
    one = evaluate(
        None,
        [
            f"ckpt={run_dir / 'checkpoints/last.ckpt'}",
            "metrics.eval_samples=40",
            f"output_dir={tmp_path / 'eval'}",
            "trainer.devices=1",
            "trainer.strategy=auto",
        ],
    )
    scores = json.loads((Path(one.run_dir) / "scores.json").read_text())
    assert scores["fid"] == pytest.approx(logged, rel=1e-5)
