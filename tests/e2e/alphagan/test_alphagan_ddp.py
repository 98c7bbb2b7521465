"""A real 2-process CPU DDP search (gloo) through the command line.

The weight phase runs in DDP's reducer (G unused in the D step, D and α in the G step: the
system asks for unused-parameter search, so plain ``ddp`` runs as
``ddp_find_unused_parameters_true``); the worst-case copies and the α steps run outside it with
gradients averaged by hand. Each rank draws its own noise, yet after several epochs α and G's
weights must be identical on both ranks, and rank 0 alone writes the run folder's files.
"""

from __future__ import annotations

import subprocess

import pytest
import torch

from tests.e2e.alphagan.test_alphagan_search import gan_data, tiny_search  # noqa: F401 (fixture)
from tests.e2e.conftest import cli_env, python

pytestmark = [pytest.mark.ddp]


def test_two_process_cpu_search_keeps_alpha_equal_across_ranks(gan_data, tmp_path) -> None:  # noqa: F811
    out, cwd = tmp_path / "out", tmp_path / "cwd"
    cwd.mkdir()
    args = tiny_search(
        out,
        gan_data,
        "trainer.strategy=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=3",
        "search.eval_every=0",
        "search.plots=false",
    )
    proc = subprocess.run(
        [python(), "-m", "experiments", "train", "alphagan_search_synthetic", *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    runs = list((out / "alphagan_search_synthetic").iterdir())
    assert len(runs) == 1, runs
    assert not any(cwd.iterdir())
    run_dir = runs[0]
    assert (run_dir / "genotype.yaml").is_file()
    ckpt = torch.load(run_dir / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    extra = ckpt["alphagan_search"]
    alphas, sums, noise = extra["alpha_ranks"], extra["g_weight_sums"], extra["noise"]
    assert len(alphas) == 2 and torch.equal(alphas[0], alphas[1])
    assert torch.equal(sums[0], sums[1])
    assert not torch.equal(noise[0], noise[1])  # different z per rank
    init = ckpt["alphagan_search"]["alpha_history"][0]
    assert int(ckpt["state_dict"]["arch_step"]) == 6 and len(extra["alpha_history"]) == 3
    assert init != extra["alpha_history"][-1]  # α moved
