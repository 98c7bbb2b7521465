"""Learning-rate schedule helpers shared by the TextNAS modules."""

from __future__ import annotations

from typing import Any

import torch


def follow_max_epochs(schedulers: Any, max_epochs: int | None) -> None:
    """Point every ``CosineAnnealingLR`` at the trainer's current ``max_epochs``.

    A run resumed with a larger ``trainer.max_epochs`` gets its schedulers back with the T_max
    of the run that wrote the checkpoint; past that epoch a cosine schedule climbs back up to
    the initial learning rate (it is periodic). With T_max moved to the new last epoch, the
    learning rate keeps annealing from where it is and reaches eta_min at the new end (a run
    that had already finished stays at eta_min: to train on at a useful rate, start a new run
    from its weights). With an unchanged ``max_epochs`` nothing changes, so a plain resume stays
    bit-identical to an uninterrupted run.
    """
    if not max_epochs or max_epochs < 0 or schedulers is None:
        return
    for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
        if isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
            scheduler.T_max = max_epochs
