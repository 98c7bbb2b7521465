"""Run by ``tests/e2e/alphagan/test_alphagan_ddp.py`` as ``python -m tests.helpers.alphagan_ddp_run
OUT OVERRIDES...``: the search through the entry point's :func:`experiments.run.train`, with a
test callback that saves every rank's α, G weights and noise state at the end of training (the
instrumentation lives here, not in the module). Lightning's DDP launcher re-runs this module
for rank 1."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import torch

from experiments.run import train


class RankState(L.Callback):
    """``OUT/rank{r}.pt``: α (flattened), G's weights (flattened), the noise generator state."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        g = module.generator
        torch.save(
            {
                "alpha": torch.cat([a.detach().cpu().flatten() for a in g.alphas()]),
                "g_weights": torch.cat([p.detach().cpu().flatten() for p in g.weights()]),
                "noise": module.noise.get_state(),
            },
            self.out / f"rank{trainer.global_rank}.pt",
        )


if __name__ == "__main__":
    out, *overrides = sys.argv[1:]
    try:
        train("alphagan_search_synthetic", overrides, extra_callbacks=[RankState(out)])
    finally:  # as the entry point does: a gloo group alive at exit can abort the process
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
