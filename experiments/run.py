"""In-process API of the entry point: ``resolve``, ``train``, ``evaluate``, ``inspect_data``,
``show``.

The CLI (``python -m experiments``) is a thin shell over these functions, and the tests call
them directly.
"""

from __future__ import annotations

import dataclasses
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
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig

from experiments.callbacks import MetricsJSON
from experiments.checkpoints import (
    check_state_fits,
    load_checkpoint,
    load_run,
    stored_config,
    suite_meta,
)
from experiments.config import ConfigError, compose, is_user_error, parse_override, to_yaml
from experiments.registry import (
    SYSTEMS,
    RunContext,
    SystemSpec,
    experiment_system,
    experiment_yaml,
    get_system,
)
from experiments.slurm import job_key, job_run_dir, newest_checkpoint
from experiments.trainer import (
    RUN_DIR_ENV,
    build_trainer,
    check_manual_optimization,
    check_strategy,
    check_writable,
    env_rank,
    export_run_dir,
    make_run_dir,
    output_folder,
)
from experiments.wandb_run import log_run_artifacts


@dataclass
class RunResult:
    """Outcome of ``train``/``evaluate``: the run folder and the contents of its metrics.json."""

    run_dir: Path
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


def _check_command(spec: SystemSpec, cfg: DictConfig, experiment: str, command: str) -> None:
    if cfg.experiment != experiment:
        raise ConfigError(f"experiment: cannot be overridden (running '{experiment}')")
    if command in ("train", "eval") and command not in spec.commands:
        raise ConfigError(
            f"system '{cfg.system}' has no '{command}' command; it has: "
            + ", ".join([*spec.commands, *spec.extra_commands])
        )


def compose_experiment(
    experiment: str, overrides: Sequence[str] = (), command: str = ""
) -> tuple[SystemSpec, DictConfig]:
    """An experiment's config, not yet validated: schema defaults <- its YAML <- ``overrides``."""
    path = experiment_yaml(experiment)
    system = experiment_system(experiment)
    spec = get_system(system)
    cfg = compose(spec.config_cls, [path], list(overrides), base={"experiment": experiment})
    if cfg.system != system:
        raise ConfigError(
            f"system: cannot be overridden (experiment '{experiment}' is a '{system}' run)"
        )
    _check_command(spec, cfg, experiment, command)
    return spec, cfg


def resolve(
    experiment: str, overrides: Sequence[str] = (), command: str | None = None
) -> tuple[SystemSpec, DictConfig]:
    """An experiment's config, validated once by its system."""
    spec, cfg = compose_experiment(experiment, overrides, command or "")
    if spec.validate is not None:
        spec.validate(cfg)
    return spec, cfg


def show(experiment: str, overrides: Sequence[str] = ()) -> str:
    """The resolved config of an experiment as YAML."""
    return to_yaml(resolve(experiment, overrides)[1])


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


def find_resume(cfg: DictConfig) -> tuple[str | None, Path | None]:
    """``(checkpoint path, run folder to continue in)`` for ``cfg.resume``; (None, None) if
    unset."""
    if not cfg.resume and job_key() is not None:
        cfg.resume = "auto"  # a cluster job continues in its folder when requeued
    if not cfg.resume:
        return None, None
    exp_dir = Path(cfg.output_dir).resolve() / str(cfg.experiment)
    if cfg.resume == "auto":
        return _auto_resume(cfg, exp_dir)
    if cfg.resume == "last":
        found = sorted(exp_dir.glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise ConfigError(
                f"resume=last: no checkpoint matches {exp_dir}/*/checkpoints/last.ckpt"
            )
        path = found[-1]
        return str(path), path.parent.parent
    path = Path(str(cfg.resume)).expanduser().resolve()
    meta = suite_meta(load_checkpoint(path, "resume"), path, str(cfg.experiment))
    if path.parent.name == "checkpoints":
        return str(path), path.parent.parent
    stored = Path(meta.get("run_dir", ""))
    return str(path), stored if stored.is_dir() and meta.get("run_dir") else None


def _auto_resume(cfg: DictConfig, exp_dir: Path) -> tuple[str | None, Path | None]:
    """``resume=auto``: the newest checkpoint of the job's folder (any run's folder outside a
    cluster job), Lightning's requeue checkpoints included; none: a fresh run."""
    folder = job_run_dir(str(cfg.output_dir), str(cfg.experiment))
    if folder is None:
        runs = [p.parent.parent for p in exp_dir.glob("*/checkpoints/*.ckpt")]
        runs += [p.parent for p in exp_dir.glob("*/hpc_ckpt_*.ckpt")]
        folder = max(runs, key=lambda p: p.stat().st_mtime_ns) if runs else None
    ckpt = newest_checkpoint(folder) if folder is not None and folder.is_dir() else None
    if ckpt is None:
        return None, None
    suite_meta(load_checkpoint(ckpt, "resume=auto"), ckpt, str(cfg.experiment))
    return str(ckpt), folder


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


def train(
    experiment: str, overrides: Sequence[str] = (), extra_callbacks: Sequence[Callback] = ()
) -> RunResult:
    """Train an experiment; ``resume=last|PATH`` continues a run in its own folder.

    ``extra_callbacks`` join the Trainer's (e.g. a sweep's reporting callback)."""
    spec, cfg = compose_experiment(experiment, overrides, command="train")
    ckpt_path, resume_dir = find_resume(cfg)
    key = f"resume={cfg.resume}" if cfg.resume in ("last", "auto") else "resume"
    if resume_dir is None:
        check_writable(output_folder(cfg))
    else:  # a resumed run goes on writing into its own folder
        for folder in (resume_dir, resume_dir / "checkpoints"):
            check_writable(folder, key)
    checkpoint = None
    if ckpt_path is None:
        if spec.validate is not None:
            spec.validate(cfg)
    else:
        # A resumed run is the checkpoint's run: its stored config (model sizes, data) <- the
        # overrides, and the system rebuilds from the checkpoint (e.g. its vocabulary), so a
        # mismatch is caught before anything in the run folder is touched.
        checkpoint = load_checkpoint(Path(ckpt_path), key)
        meta = suite_meta(checkpoint, Path(ckpt_path), experiment)
        cfg = stored_config(
            spec,
            meta,
            Path(ckpt_path),
            overrides,
            experiment=experiment,
            resume=str(cfg.resume),
            ckpt=None,
        )
        _check_command(spec, cfg, experiment, "train")
    L.seed_everything(cfg.seed, workers=True)
    module, datamodule = spec.build(cfg, checkpoint)
    if checkpoint is not None:
        check_state_fits(module, checkpoint, ckpt_path)
    check_manual_optimization(cfg, module)
    check_strategy(cfg, spec)
    run_dir = resume_dir or make_run_dir(cfg)
    with _RunFolder(run_dir, fresh=resume_dir is None), warnings.catch_warnings():
        if resume_dir is not None:  # continuing in its own folder is the point
            warnings.filterwarnings("ignore", message="Checkpoint directory .* is not empty")
        trainer = build_trainer(cfg, run_dir, module, spec, extra_callbacks=extra_callbacks)
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        run_dir = _shared_run_dir(trainer, run_dir)
        metrics = _metrics(trainer)
        if spec.after_fit is not None:
            spec.after_fit(RunContext(cfg, run_dir, trainer, module, datamodule, metrics))
        log_run_artifacts(trainer, run_dir)
        return RunResult(run_dir, metrics)


def _ckpt_override(overrides: Sequence[str]) -> str | None:
    """The last ``ckpt=PATH`` among the overrides (None if absent or empty)."""
    value = None
    for item in overrides:
        if item.partition("=")[0].strip() == "ckpt":
            value = parse_override(item)[1]
    return str(value) if value else None


def evaluate(experiment: str | None, overrides: Sequence[str] = ()) -> RunResult:
    """Validate (and test, if the datamodule ``has_test_labels``) a checkpoint.

    The config is: schema defaults <- the config stored in the checkpoint <- ``overrides``.
    ``experiment`` defaults to the checkpoint's; a different one is an error.
    """
    ckpt = _ckpt_override(overrides)
    if ckpt is None:
        raise ConfigError("eval needs a checkpoint: ckpt=PATH")
    run = load_run(ckpt, experiment, overrides)
    spec, cfg, module, datamodule = run.spec, run.cfg, run.module, run.datamodule
    _check_command(spec, cfg, str(cfg.experiment), "eval")
    L.seed_everything(cfg.seed, workers=True)
    run_dir = make_run_dir(cfg, suffix="-eval")
    with _RunFolder(run_dir, fresh=True):
        trainer = build_trainer(cfg, run_dir, module, spec, checkpointing=False)
        trainer.validate(module, datamodule=datamodule)
        if getattr(datamodule, "has_test_labels", False):
            trainer.test(module, datamodule=datamodule)
        run_dir = _shared_run_dir(trainer, run_dir)
        metrics = _metrics(trainer)
        if spec.after_eval is not None:
            spec.after_eval(
                RunContext(cfg, run_dir, trainer, module, datamodule, metrics, run.checkpoint)
            )
        log_run_artifacts(trainer, run_dir)
        return RunResult(run_dir, metrics)


def inspect_data(experiment: str, overrides: Sequence[str] = ()) -> tuple[dict[str, Any], Path]:
    """The data exactly as training reads it: ``({"splits": {...}, ...}, preview folder)``.

    The datamodule's ``data_summary()`` gives the split sizes and label counts; its
    ``write_preview(folder)`` writes what a person looks at into a new ``<stamp>-data`` folder.
    """
    spec, cfg = resolve(experiment, overrides, command="data")
    check_writable(output_folder(cfg))
    if spec.datamodule is not None:
        datamodule = spec.datamodule(cfg, None)
    else:
        datamodule = spec.build(cfg, None)[1]
    datamodule.setup("fit")
    for method in ("data_summary", "write_preview"):
        if not callable(getattr(datamodule, method, None)):
            raise ConfigError(f"system '{cfg.system}': its datamodule has no {method}()")
    summary = datamodule.data_summary()
    out_dir = make_run_dir(cfg, suffix="-data")
    try:
        (out_dir / "config.yaml").write_text(to_yaml(cfg))
        datamodule.write_preview(out_dir)
    except BaseException:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return summary, out_dir


def _command_experiment(command: str, overrides: Sequence[str]) -> str:
    """The experiment of a system command given without one: the checkpoint's (``ckpt=PATH``),
    else an error saying what is missing (or that the command is unknown)."""
    ckpt = _ckpt_override(overrides)
    if ckpt is not None:
        return str(suite_meta(load_checkpoint(ckpt, "ckpt"), Path(ckpt))["experiment"])
    systems = [name for name in SYSTEMS if command in get_system(name).extra_commands]
    if systems:
        raise ConfigError(
            f"'{command}' needs an EXPERIMENT of system {' or '.join(systems)} (see `python -m "
            "experiments list`), or ckpt=PATH of a run to take it from"
        )
    commands = sorted({c for name in SYSTEMS for c in get_system(name).extra_commands})
    raise ConfigError(
        f"unknown command '{command}' (see `python -m experiments --help`; the systems' own: "
        f"{', '.join(commands)})"
    )


def run_command(
    command: str, experiment: str | None, overrides: Sequence[str], args: Sequence[str]
) -> int:
    """Run a system's extra command (``derive``, ...); returns its exit code.

    ``experiment`` None: the one that wrote ``ckpt=PATH``. The command gets the experiment's
    composed config and validates what it uses (``derive`` rebuilds the checkpoint's run
    through the run loader, which validates that config)."""
    if experiment is None:
        experiment = _command_experiment(command, overrides)
    # key=value words whose first part is no config key are the command's own options
    # (e.g. sample's n=, out=): they go to the command with its other arguments
    keys = {
        f.name for f in dataclasses.fields(get_system(experiment_system(experiment)).config_cls)
    }
    args = [*(o for o in overrides if o.partition("=")[0].split(".")[0] not in keys), *args]
    overrides = [o for o in overrides if o.partition("=")[0].split(".")[0] in keys]
    spec, cfg = compose_experiment(experiment, overrides, command=command)
    fn = spec.extra_commands.get(command)
    if fn is None:
        raise ConfigError(
            f"experiment '{experiment}' (system '{cfg.system}') has no command '{command}'; "
            "it has: " + ", ".join([*spec.commands, *spec.extra_commands])
        )
    try:
        return int(fn(cfg, list(args)) or 0)
    finally:
        _finish_wandb()
