"""Callbacks every run gets: checkpoint metadata, RNG state for exact resume, metrics.json.

None of them touches a logger, so they work under ``fast_dev_run`` (``DummyLogger``) too.
"""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from omegaconf import DictConfig

from experiments.config import to_container


class SuiteMetadata(Callback):
    """Stores ``checkpoint["suite"]``: experiment, system, resolved config and run folder.

    ``eval`` and ``resume`` use it to rebuild the model and to refuse checkpoints written by
    another experiment.
    """

    def __init__(self, cfg: DictConfig, run_dir: Path) -> None:
        self.meta = {
            "experiment": str(cfg.experiment),
            "system": str(cfg.system),
            "config": to_container(cfg),
            "run_dir": str(run_dir),
        }

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint["suite"] = dict(self.meta)


def collect_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and (if initialised) CUDA generator states of this process.

    Only tuples, ints, floats, strings and tensors, so ``torch.load(weights_only=True)`` (what
    Lightning uses by default) can read checkpoints holding them.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (
            kind,
            torch.from_numpy(keys.astype(np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`collect_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RNGState(Callback):
    """Saves every rank's RNG states in checkpoints and restores them when training resumes.

    States are restored while Lightning restores the checkpoint (``on_load_checkpoint``), which
    comes after ``setup``/``configure_model`` and before the training dataloader's iterator is
    created (the sanity check in between runs inside ``isolate_rng``). So shuffling order and
    dropout masks after a resume are exactly those of an uninterrupted run, provided nothing
    draws random numbers in ``on_fit_start``.
    """

    key = "rng_states"

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        state = collect_rng_state()
        if (
            trainer.world_size > 1
            and torch.distributed.is_available()
            and torch.distributed.is_initialized()
        ):
            gathered: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, state)
            checkpoint[self.key] = gathered
        else:
            checkpoint[self.key] = [state]

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        states = checkpoint.get(self.key)
        if not states or trainer.state.fn != "fit":
            return
        rank = trainer.global_rank
        if rank >= len(states):
            rank_zero_warn(
                f"checkpoint has RNG states of {len(states)} ranks; rank {rank} keeps its own"
            )
            return
        restore_rng_state(states[rank])


def _scalar(value: Any) -> float | None:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return None
        value = value.item()
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        value = float(value)
        return value if math.isfinite(value) else None
    return None


class MetricsJSON(Callback):
    """Rank 0 writes ``run_dir/metrics.json`` with sections ``fit``, ``validate`` and ``test``.

    Each section holds every scalar of ``trainer.logged_metrics`` and ``callback_metrics`` as a
    float, plus ``global_step`` and ``epoch``; ``fit`` also holds ``best_model_path`` and
    ``best_model_score``. The same dict is kept in :attr:`results` on every rank.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / "metrics.json"
        self.results: dict[str, dict[str, Any]] = {}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer, "fit")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "validate":
            self._record(trainer, "validate")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer, "test")

    def _record(self, trainer: L.Trainer, section: str) -> None:
        metrics: dict[str, Any] = {}
        for source in (trainer.logged_metrics, trainer.callback_metrics):
            for key, value in source.items():
                scalar = _scalar(value)
                if scalar is not None:
                    metrics[key] = scalar
        metrics["global_step"] = int(trainer.global_step)
        metrics["epoch"] = int(trainer.current_epoch)
        if section == "fit":
            ckpt = trainer.checkpoint_callback
            metrics["best_model_path"] = getattr(ckpt, "best_model_path", "") or None
            metrics["best_model_score"] = _scalar(getattr(ckpt, "best_model_score", None))
        self.results[section] = metrics
        if trainer.is_global_zero:
            self._write(section, metrics)

    def _write(self, section: str, metrics: dict[str, Any]) -> None:
        data: dict[str, Any] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError):
                data = {}
        data[section] = metrics
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.path)
