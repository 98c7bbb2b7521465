"""Callbacks every run gets: checkpoint metadata, RNG state for exact resume, metrics.json,
and the stop on a non-finite training loss.

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

from experiments.config import ConfigError, to_container


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


class NonFiniteLossError(ConfigError):
    """A training loss became NaN or infinite: a user-facing stop (one ``error:`` line, exit
    code 2), since the usual causes are the data or the settings (learning rate, precision)."""


class NonFiniteLossStop(Callback):
    """Stops training when a training loss is NaN or infinite (``allow=False``), before any
    checkpoint holds the weights it produced; with ``allow=True`` it warns once and goes on.

    Checked after every training batch: the loss the step returned (automatic optimization)
    and every loss the step logged (each metric whose name holds ``loss``, outside ``val/`` and
    ``test/``), so manual-optimization modules (several losses per step) are covered as well.
    Under DDP the ranks agree (one reduction of a flag per step), so they all stop together.
    Lightning's ``EarlyStopping(check_finite=True)`` needs one monitored metric and checks it
    only when it validates, hence this callback.
    """

    def __init__(self, allow: bool = False) -> None:
        self.allow = allow
        self._warned = False

    @staticmethod
    def _bad_losses(outputs: Any, trainer: L.Trainer) -> dict[str, float]:
        """{name: value} of the non-finite losses of this step: the logged ones (without the
        ``_step``/``_epoch`` copies of a logged name), else the loss the step returned."""
        logged = {
            key: value
            for key, value in trainer.callback_metrics.items()
            if "loss" in key.rpartition("/")[2] and not key.startswith(("val/", "test/"))
        }
        for key in list(logged):
            base = key.removesuffix("_step").removesuffix("_epoch")
            if base != key and base in logged:
                del logged[key]
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        found = dict(logged)
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            found.setdefault("the returned loss", loss)
        bad = {}
        for key, value in found.items():
            number = float(value.detach().float()) if isinstance(value, torch.Tensor) else value
            if isinstance(number, float) and not math.isfinite(number):
                bad[key] = number
        if len(bad) > 1:
            bad.pop("the returned loss", None)  # a logged loss names it better
        return bad

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        bad = self._bad_losses(outputs, trainer)
        if trainer.world_size > 1:
            any_bad = trainer.strategy.reduce_boolean_decision(bool(bad), all=False)
        else:
            any_bad = bool(bad)
        if not any_bad:
            return
        what = ", ".join(f"{k} = {v}" for k, v in bad.items()) if bad else "a loss on another rank"
        # the global batch index: the step the loggers show this batch's values at
        step = trainer.fit_loop.epoch_loop.total_batch_idx
        where = f"step {step} (epoch {trainer.current_epoch}, batch {batch_idx})"
        if self.allow:
            if not self._warned:
                rank_zero_warn(
                    f"non-finite training loss at {where}: {what}; training goes on "
                    "(allow_nonfinite_loss=true)"
                )
                self._warned = True
            return
        raise NonFiniteLossError(
            f"training stopped at {where}: {what}; no checkpoint is saved from here on. Check "
            "the data (the data command reads every file) and the learning rate, or set "
            "allow_nonfinite_loss=true to go on regardless"
        )


def _scalar(value: Any) -> float | None:
    """A logged value as a float (NaN and infinities kept), or None if it is not a scalar."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return None
        value = value.item()
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return float(value)
    return None


def _json_number(value: Any) -> Any:
    """Non-finite floats as the strings ``"nan"``, ``"inf"``, ``"-inf"`` (JSON has no such
    numbers; ``float()`` reads these strings back)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsJSON(Callback):
    """Rank 0 writes ``run_dir/metrics.json`` with sections ``fit``, ``validate`` and ``test``.

    Each section holds every scalar of ``trainer.logged_metrics`` and ``callback_metrics`` as a
    float (in the file, NaN and infinities as the strings ``"nan"``/``"inf"``/``"-inf"``), plus
    ``global_step`` and ``epoch``; ``fit`` also holds ``best_model_path`` and
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
        data[section] = {key: _json_number(value) for key, value in metrics.items()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.path)


class CompileNetworks(Callback):
    """``trainer.compile``: each network of the module compiled in place with ``torch.compile``
    (``nn.Module.compile``: parameter names and checkpoints unchanged) before the first step;
    metrics and parameter-free children are left alone. ``backend`` None: PyTorch's default."""

    def __init__(self, backend: str | None = None) -> None:
        self.backend = backend

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        from torchmetrics import Metric

        kwargs = {"backend": self.backend} if self.backend else {}
        for child in pl_module.children():
            if isinstance(child, Metric) or next(child.parameters(), None) is None:
                continue
            if getattr(child, "_compiled_call_impl", None) is None:
                child.compile(**kwargs)


def set_matmul_precision(value: str | None, trainer: L.Trainer) -> None:
    """``trainer.float32_matmul_precision``; None: ``high`` (TF32) on CUDA, else unchanged."""
    from lightning.pytorch.accelerators import CUDAAccelerator

    if value is None and isinstance(trainer.accelerator, CUDAAccelerator):
        value = "high"
    if value is not None:
        torch.set_float32_matmul_precision(value)
