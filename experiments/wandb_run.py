"""What a run tells wandb beyond its logged values: each system's headline metrics with their
direction (``define_metric`` summaries, so the runs table shows the best ``val/acc``, the lowest
FID or LVE) and the files that define the run as artifacts (the resolved config, the derived
``architecture.yaml`` / ``genotype.yaml``). Rank 0 only; nothing when wandb is off."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger

#: files of a run folder logged as artifacts, with their artifact type
ARTIFACT_FILES = {
    "config.yaml": "config",
    "architecture.yaml": "architecture",
    "genotype.yaml": "genotype",
}


def wandb_run(trainer: L.Trainer | None) -> Any:
    """The trainer's wandb run on rank 0, else None."""
    if trainer is None or not trainer.is_global_zero:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            return logger.experiment
    return None


class WandbSummaries(L.Callback):
    """``define_metric(key, summary=max|min)`` for ``metrics`` (``[(key, "max"|"min"), ...]``)
    before the first value is logged."""

    def __init__(self, metrics: Sequence[tuple[str, str]]) -> None:
        self.metrics = [(k, g) for k, g in dict(metrics).items() if k]

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        run = wandb_run(trainer)
        if run is None:
            return
        for key, goal in self.metrics:
            if goal not in ("max", "min"):
                raise ValueError(f"summary of '{key}' must be max or min, got {goal!r}")
            run.define_metric(key, summary=goal)


def log_run_artifacts(trainer: L.Trainer | None, run_dir: Path) -> list[str]:
    """Log the run folder's defining files (:data:`ARTIFACT_FILES`) to wandb as artifacts named
    ``<experiment>-<type>``; returns the names logged."""
    run = wandb_run(trainer)
    if run is None:
        return []
    import wandb

    logged = []
    for name, kind in ARTIFACT_FILES.items():
        path = Path(run_dir) / name
        if not path.is_file():
            continue
        artifact = wandb.Artifact(f"{_safe(run.name or 'run')}-{kind}", type=kind)
        artifact.add_file(str(path), name=name)
        run.log_artifact(artifact)
        logged.append(artifact.name)
    return logged


def _safe(name: str) -> str:
    """An artifact name: letters, digits, dashes, underscores and dots only."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
