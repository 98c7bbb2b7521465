"""The retrain on a GPU under bf16-mixed (manual optimisation, autocast in both steps, the EMA
in fp32): a few G iterations end with finite losses and scores (skipped without CUDA)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from datamodules.images.synthetic import write_synthetic_cifar10
from experiments.run import train
from tests.e2e.alphagan.test_alphagan_retrain import TINY

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_bf16_retrain_on_gpu(tmp_path):
    data = tmp_path / "cifar"
    write_synthetic_cifar10(data, n_train=128, n_test=64, seed=0)
    words = [w for w in TINY if not w.startswith("trainer.")]
    result = train(
        "alphagan_train_synthetic",
        [
            *words,
            f"data.root={data}",
            f"output_dir={tmp_path}",
            "trainer.accelerator=gpu",
            "trainer.devices=1",
            "trainer.precision=bf16-mixed",
            "trainer.enable_progress_bar=false",
        ],
    )
    fit = json.loads((result.run_dir / "metrics.json").read_text())["fit"]
    for key in ("train/d_loss", "train/g_loss"):
        assert math.isfinite(float(fit[key])), key
    scores = [k for k in fit if k.startswith("val/fid")]
    assert scores and all(math.isfinite(float(fit[k])) for k in scores)
