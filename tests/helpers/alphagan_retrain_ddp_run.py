"""Run by ``tests/e2e/alphagan/test_alphagan_retrain_ddp.py`` as ``python -m
tests.helpers.alphagan_retrain_ddp_run OUT OVERRIDES...``: the retraining through the entry
point's :func:`experiments.run.train`, with a test callback that saves every rank's G and EMA
weights and noise state at the end (the instrumentation lives here, not in the module)."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import torch

from experiments.run import train


class RankState(L.Callback):
    def __init__(self, out: str) -> None:
        self.out = Path(out)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        flat = lambda m: torch.cat([p.detach().cpu().flatten() for p in m.parameters()])  # noqa: E731
        torch.save(
            {
                "g": flat(module.generator),
                "ema": flat(module.ema.module),
                "noise": module.noise.get_state(),
            },
            self.out / f"rank{trainer.global_rank}.pt",
        )


if __name__ == "__main__":
    out, *overrides = sys.argv[1:]
    try:
        train("alphagan_train_synthetic", overrides, extra_callbacks=[RankState(out)])
    finally:  # as the entry point does: a gloo group alive at exit can abort the process
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
