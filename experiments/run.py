"""In-process API of the entry point: ``resolve``, ``train``, ``evaluate``, ``show``.

The CLI (``python -m experiments``) is a thin shell over these functions, and the tests call
them directly.
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from experiments.callbacks import MetricsJSON
from experiments.config import ConfigError, compose, is_user_error, parse_override, to_yaml
from experiments.registry import (
    RunContext,
    SystemSpec,
    experiment_system,
    experiment_yaml,
    get_system,
)
from experiments.trainer import (
    RUN_DIR_ENV,
    build_trainer,
    check_manual_optimization,
    env_rank,
    export_run_dir,
    make_run_dir,
)


@dataclass
class RunResult:
    """Outcome of ``train``/``evaluate``: the run folder and the contents of its metrics.json."""

    run_dir: Path
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


def _finish_config(spec: SystemSpec, cfg: DictConfig, experiment: str, command: str) -> DictConfig:
    if cfg.experiment != experiment:
        raise ConfigError(f"experiment: cannot be overridden (running '{experiment}')")
    if spec.validate is not None:
        spec.validate(cfg)
    if command in ("train", "eval") and command not in spec.commands:
        raise ConfigError(
            f"system '{cfg.system}' has no '{command}' command; it has: "
            + ", ".join([*spec.commands, *spec.extra_commands])
        )
    return cfg


def resolve(
    experiment: str, overrides: Sequence[str] = (), command: str | None = None
) -> tuple[SystemSpec, DictConfig]:
    """Compose an experiment's config: schema defaults <- its YAML <- ``overrides``."""
    path = experiment_yaml(experiment)
    system = experiment_system(experiment)
    spec = get_system(system)
    cfg = compose(spec.config_cls, [path], list(overrides), base={"experiment": experiment})
    if cfg.system != system:
        raise ConfigError(
            f"system: cannot be overridden (experiment '{experiment}' is a '{system}' run)"
        )
    return spec, _finish_config(spec, cfg, experiment, command or "")


def show(experiment: str, overrides: Sequence[str] = ()) -> str:
    """The resolved config of an experiment as YAML."""
    return to_yaml(resolve(experiment, overrides)[1])


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint on CPU (memory-mapped when possible); ConfigError if absent/unreadable."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except RuntimeError:
        pass  # not a zip-format checkpoint: no mmap
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ConfigError(f"cannot read checkpoint {path}: {str(e).splitlines()[0]}") from e


def _suite_meta(checkpoint: dict[str, Any], path: Path, experiment: str | None) -> dict[str, Any]:
    meta = checkpoint.get("suite")
    if not isinstance(meta, dict) or "experiment" not in meta:
        raise ConfigError(
            f"checkpoint {path} has no suite metadata (it was not written by `python -m experiments train`)"
        )
    if experiment is not None and meta["experiment"] != experiment:
        raise ConfigError(
            f"checkpoint {path} was written by experiment '{meta['experiment']}', not '{experiment}'"
        )
    return meta


def find_resume(cfg: DictConfig) -> tuple[str | None, Path | None]:
    """``(checkpoint path, run folder to continue in)`` for ``cfg.resume``; (None, None) if unset."""
    if not cfg.resume:
        return None, None
    exp_dir = Path(cfg.output_dir).resolve() / str(cfg.experiment)
    if cfg.resume == "last":
        found = sorted(exp_dir.glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise ConfigError(
                f"resume=last: no checkpoint matches {exp_dir}/*/checkpoints/last.ckpt"
            )
        path = found[-1]
        return str(path), path.parent.parent
    path = Path(str(cfg.resume)).expanduser().resolve()
    meta = _suite_meta(load_checkpoint(path), path, str(cfg.experiment))
    if path.parent.name == "checkpoints":
        return str(path), path.parent.parent
    stored = Path(meta.get("run_dir", ""))
    return str(path), stored if stored.is_dir() and meta.get("run_dir") else None


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


def _finish_wandb(failed: bool = False) -> None:
    """Close the W&B run if one is open (so the next run in this process gets its own)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=1 if failed else 0)


def _metrics(trainer: L.Trainer) -> dict[str, dict[str, Any]]:
    for cb in trainer.callbacks:
        if isinstance(cb, MetricsJSON):
            return dict(cb.results)
    return {}


def _shared_run_dir(trainer: L.Trainer, run_dir: Path) -> Path:
    """Rank 0's run folder on every rank (ranks started by torchrun/SLURM guessed their own)."""
    if (
        trainer.world_size > 1
        and torch.distributed.is_available()
        and torch.distributed.is_initialized()
    ):
        return Path(trainer.strategy.broadcast(str(run_dir), src=0))
    return run_dir


class _RunFolder:
    """Context manager: exports the run folder to DDP children, removes it if a fresh run dies
    of a user error before writing any checkpoint, restores ``SUITE_RUN_DIR`` afterwards."""

    def __init__(self, run_dir: Path, fresh: bool) -> None:
        self.run_dir, self.fresh = run_dir, fresh
        self._prev = os.environ.get(RUN_DIR_ENV)

    def __enter__(self) -> _RunFolder:
        if env_rank() == 0:
            export_run_dir(self.run_dir)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        _finish_wandb(failed=exc is not None)
        if env_rank() == 0:
            if self._prev is None:
                os.environ.pop(RUN_DIR_ENV, None)
            else:
                os.environ[RUN_DIR_ENV] = self._prev
            ckpts = self.run_dir / "checkpoints"
            if (
                self.fresh
                and exc is not None
                and is_user_error(exc)
                and not (ckpts.is_dir() and any(ckpts.iterdir()))
            ):
                shutil.rmtree(self.run_dir, ignore_errors=True)


def train(experiment: str, overrides: Sequence[str] = ()) -> RunResult:
    """Train an experiment; ``resume=last|PATH`` continues a run in its own folder."""
    spec, cfg = resolve(experiment, overrides, command="train")
    ckpt_path, resume_dir = find_resume(cfg)
    checkpoint = None
    if ckpt_path is not None:
        # A resumed run is the checkpoint's run: its stored config (model sizes, data) <- the
        # overrides, and the system rebuilds from the checkpoint (e.g. its vocabulary), so a
        # mismatch is caught before anything in the run folder is touched.
        checkpoint = load_checkpoint(Path(ckpt_path))
        meta = _suite_meta(checkpoint, Path(ckpt_path), experiment)
        stored = dict(meta.get("config") or {})
        stored.update(experiment=experiment, resume=str(cfg.resume), ckpt=None)
        cfg = compose(
            spec.config_cls, [], list(overrides), base=stored,
            base_origin=f"config stored in {ckpt_path}",
        )  # fmt: skip
        cfg = _finish_config(spec, cfg, experiment, "train")
    L.seed_everything(cfg.seed, workers=True)
    module, datamodule = spec.build(cfg, checkpoint)
    if checkpoint is not None:
        check_state_fits(module, checkpoint, ckpt_path)
    check_manual_optimization(cfg, module)
    run_dir = resume_dir or make_run_dir(cfg)
    with _RunFolder(run_dir, fresh=resume_dir is None), warnings.catch_warnings():
        if resume_dir is not None:  # continuing in its own folder is the point
            warnings.filterwarnings("ignore", message="Checkpoint directory .* is not empty")
        trainer = build_trainer(cfg, run_dir, module)
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=False)
        run_dir = _shared_run_dir(trainer, run_dir)
        metrics = _metrics(trainer)
        if spec.after_fit is not None:
            spec.after_fit(RunContext(cfg, run_dir, trainer, module, datamodule, metrics))
        return RunResult(run_dir, metrics)


def check_state_fits(module: L.LightningModule, checkpoint: dict, path: object) -> None:
    """A checkpoint whose weights do not fit the module built from the config is a user error
    (e.g. a changed model size on resume), caught before any run folder is touched."""
    stored = checkpoint.get("state_dict", {})
    for name, tensor in module.state_dict().items():
        if name not in stored:
            raise ConfigError(f"checkpoint {path} does not fit this config: it has no '{name}'")
        if tuple(stored[name].shape) != tuple(tensor.shape):
            raise ConfigError(
                f"checkpoint {path} does not fit this config: '{name}' has shape "
                f"{tuple(stored[name].shape)} there and {tuple(tensor.shape)} here "
                "(was a model size changed?)"
            )


def _ckpt_override(overrides: Sequence[str]) -> str:
    value = None
    for item in overrides:
        if item.partition("=")[0].strip() == "ckpt":
            value = parse_override(item)[1]
    if not value:
        raise ConfigError("eval needs a checkpoint: ckpt=PATH")
    return str(value)


def evaluate(experiment: str | None, overrides: Sequence[str] = ()) -> RunResult:
    """Validate (and test, if the datamodule ``has_test_labels``) a checkpoint.

    The config is: schema defaults <- the config stored in the checkpoint <- ``overrides``.
    ``experiment`` defaults to the checkpoint's; a different one is an error.
    """
    path = Path(_ckpt_override(overrides)).expanduser()
    checkpoint = load_checkpoint(path)
    meta = _suite_meta(checkpoint, path, experiment)
    experiment = str(meta["experiment"])
    spec = get_system(str(meta["system"]))
    stored = {k: v for k, v in dict(meta.get("config") or {}).items()}
    stored.update(experiment=experiment, resume=None, ckpt=str(path))
    cfg = compose(
        spec.config_cls, [], list(overrides), base=stored, base_origin=f"config stored in {path}"
    )
    cfg = _finish_config(spec, cfg, experiment, "eval")
    L.seed_everything(cfg.seed, workers=True)
    module, datamodule = spec.build(cfg, checkpoint)
    run_dir = make_run_dir(cfg, suffix="-eval")
    with _RunFolder(run_dir, fresh=True):
        trainer = build_trainer(cfg, run_dir, module, checkpointing=False)
        with warnings.catch_warnings():  # evaluation needs no ModelCheckpoint
            warnings.filterwarnings("ignore", message=".*callbacks used to create the checkpoint")
            trainer.validate(module, datamodule=datamodule, ckpt_path=str(path), weights_only=False)
            if getattr(datamodule, "has_test_labels", False):
                trainer.test(module, datamodule=datamodule, ckpt_path=str(path), weights_only=False)
        run_dir = _shared_run_dir(trainer, run_dir)
        metrics = _metrics(trainer)
        if spec.after_eval is not None:
            spec.after_eval(
                RunContext(cfg, run_dir, trainer, module, datamodule, metrics, checkpoint)
            )
        return RunResult(run_dir, metrics)


def run_command(
    command: str, experiment: str, overrides: Sequence[str], args: Sequence[str]
) -> int:
    """Run a system's extra command (``search``, ``derive``, ...); returns its exit code."""
    spec, cfg = resolve(experiment, overrides, command=command)
    fn = spec.extra_commands.get(command)
    if fn is None:
        raise ConfigError(
            f"experiment '{experiment}' (system '{cfg.system}') has no command '{command}'; it has: "
            + ", ".join([*spec.commands, *spec.extra_commands])
        )
    try:
        return int(fn(cfg, list(args)) or 0)
    finally:
        _finish_wandb()
