"""A real 2-process CPU DDP search (gloo) through the entry point's ``train``.

The weight phase runs in DDP's reducer (G unused in the D step, D and α in the G step: the
system asks for unused-parameter search, so plain ``ddp`` runs as
``ddp_find_unused_parameters_true``); the worst-case copies and the α steps run outside it with
gradients averaged by hand. Each rank draws its own noise, yet after several epochs α and G's
weights must be identical on both ranks, and rank 0 alone writes the run folder's files. Each
rank's state is saved by a test callback (``tests/helpers/alphagan_ddp_run.py``), not by the
module.
"""

from __future__ import annotations

import subprocess

import pytest
import torch

from tests.e2e.alphagan.test_alphagan_search import gan_data, tiny_search  # noqa: F401 (fixture)
from tests.e2e.conftest import cli_env, python

pytestmark = [pytest.mark.ddp]


def test_two_process_cpu_search_keeps_alpha_equal_across_ranks(gan_data, tmp_path) -> None:  # noqa: F811
    out, cwd, ranks = tmp_path / "out", tmp_path / "cwd", tmp_path / "ranks"
    cwd.mkdir()
    ranks.mkdir()
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
        [python(), "-m", "tests.helpers.alphagan_ddp_run", str(ranks), *args],
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
    state = [torch.load(ranks / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert torch.equal(state[0]["alpha"], state[1]["alpha"])
    assert torch.equal(state[0]["g_weights"], state[1]["g_weights"])
    assert not torch.equal(state[0]["noise"], state[1]["noise"])  # different z per rank
    noise = extra["noise"]  # every rank's noise state is checkpointed, for resume
    assert len(noise) == 2 and all(torch.equal(noise[r], state[r]["noise"]) for r in (0, 1))
    init = ckpt["alphagan_search"]["alpha_history"][0]
    assert int(ckpt["state_dict"]["arch_step"]) == 6 and len(extra["alpha_history"]) == 3
    assert init != extra["alpha_history"][-1]  # α moved
