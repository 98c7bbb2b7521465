"""Run folders, loggers, callbacks and the ``lightning.Trainer`` built from a config."""

from __future__ import annotations

import netrc
import os
import secrets
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import (
    Callback,
    LearningRateMonitor,
    ModelCheckpoint,
    TQDMProgressBar,
)
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.strategies import DDPStrategy, Strategy
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig

from experiments.callbacks import (
    CompileNetworks,
    MetricsJSON,
    NonFiniteLossStop,
    RNGState,
    SuiteMetadata,
    set_matmul_precision,
)
from experiments.config import ConfigError, to_container, to_yaml
from experiments.registry import SystemSpec
from experiments.slurm import job_run_dir
from experiments.trainer_config import lightning_kwargs
from experiments.wandb_run import WandbSummaries
from lightning_modules.callbacks import MediaLogger
from lightning_modules.layer_sync import SyncBatchNormLayers

RUN_DIR_ENV = "SUITE_RUN_DIR"


# --------------------------------------------------------------------------------------------
# Run folder
# --------------------------------------------------------------------------------------------


def env_rank() -> int:
    """Global rank as far as the environment tells before the Trainer exists (0 if unknown).

    Only "zero or not" matters here: with ``LOCAL_RANK``/``NODE_RANK`` alone it returns 1 for
    any process that is not the first one.
    """
    for var in ("RANK", "SLURM_PROCID"):
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    for var in ("LOCAL_RANK", "NODE_RANK"):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return 1
    return 0


def check_writable(folder: str | Path, key: str = "output_dir") -> None:
    """ConfigError unless ``folder`` can be created and written to (checked before any work:
    the nearest existing folder on its path must be a folder this process may write into)."""
    folder = Path(folder).expanduser().absolute()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{key}: {existing} is a file, not a folder (on the way to {folder})")
    if not os.access(existing, os.W_OK | os.X_OK):
        hint = "; give a folder you can write to: output_dir=PATH" if key == "output_dir" else ""
        raise ConfigError(f"{key}: cannot write into {existing} (permission denied){hint}")


def output_folder(cfg: DictConfig) -> Path:
    """``<output_dir>/<experiment>``: where an experiment's run folders go."""
    return Path(cfg.output_dir).resolve() / str(cfg.experiment)


def make_run_dir(cfg: DictConfig, suffix: str = "") -> Path:
    """Create ``<output_dir>/<experiment>/<YYYYmmdd-HHMMSS[-n]><suffix>/``; never reuse one.

    Rank 0 creates the folder and exports ``SUITE_RUN_DIR``, so the processes that Lightning's
    ``ddp`` launcher starts for the other ranks (with rank 0's environment) reuse it. Ranks > 0
    started independently (torchrun, SLURM) get the path without creating it; everything they
    would write there is rank-0-only, and ``ModelCheckpoint`` broadcasts rank 0's folder.
    """
    job_dir = None if suffix else job_run_dir(str(cfg.output_dir), str(cfg.experiment))
    if job_dir is not None:  # a cluster job: one folder, whatever its restarts and ranks
        if env_rank() == 0:
            job_dir.mkdir(parents=True, exist_ok=True)
            export_run_dir(job_dir)
        return job_dir
    if env_rank() > 0:
        if os.environ.get(RUN_DIR_ENV):
            return Path(os.environ[RUN_DIR_ENV])
        return output_folder(cfg) / (time.strftime("%Y%m%d-%H%M%S") + suffix)
    parent = output_folder(cfg)
    check_writable(parent)
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        run_dir = parent / (f"{stamp}-{n}" if n else stamp)
        run_dir = run_dir.with_name(run_dir.name + suffix)
        try:
            run_dir.mkdir()
        except FileExistsError:
            continue
        export_run_dir(run_dir)
        return run_dir
    raise RuntimeError(f"cannot create a new run folder under {parent}")


def export_run_dir(run_dir: Path) -> None:
    """Tell processes started later (ranks > 0 of the ``ddp`` launcher) to use ``run_dir``."""
    os.environ[RUN_DIR_ENV] = str(Path(run_dir).resolve())


# --------------------------------------------------------------------------------------------
# Loggers
# --------------------------------------------------------------------------------------------


def _has_wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_wandb_mode(mode: str) -> str:
    """``auto`` -> ``WANDB_MODE`` if set, else ``online`` with an API key, else ``offline``."""
    if mode != "auto":
        return mode
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env:
        return {"dryrun": "offline", "run": "online"}.get(env, env)
    return "online" if _has_wandb_key() else "offline"


#: ``logger.wandb.log_model`` -> WandbLogger's ``log_model`` (true: the same as best)
LOG_MODEL: dict[str, bool | str] = {"false": False, "true": True, "best": True, "all": "all"}


def _say_offline(cfg: DictConfig, run_dir: Path) -> None:
    """One line when ``auto`` fell back to offline because nobody is logged in."""
    if str(cfg.logger.wandb.mode) == "auto" and not os.environ.get("WANDB_MODE"):
        if env_rank() == 0:
            print(
                f"wandb: not logged in, logging offline to {run_dir}/wandb "
                "(`wandb login` to log online; `wandb sync` uploads this run)",
                file=sys.stderr,
            )


def _wandb_id(run_dir: Path) -> str:
    """A W&B run id kept in the run folder, so ``resume`` continues the same W&B run."""
    path = run_dir / ".wandb_id"
    if path.is_file():
        return path.read_text().strip()
    run_id = secrets.token_hex(4)
    if env_rank() == 0:
        path.write_text(run_id + "\n")
    return run_id


def build_loggers(cfg: DictConfig, run_dir: Path) -> list[Logger]:
    """CSV always; W&B unless its mode resolves to ``disabled``."""
    loggers: list[Logger] = [CSVLogger(save_dir=str(run_dir), name="csv")]
    wcfg = cfg.logger.wandb
    mode = resolve_wandb_mode(str(wcfg.mode))
    if mode == "disabled":
        return loggers
    if mode not in ("online", "offline"):
        raise ConfigError(
            f"logger.wandb.mode resolved to '{mode}' (from WANDB_MODE); use online|offline|disabled"
        )
    if mode == "offline":
        _say_offline(cfg, run_dir)
    log_model = LOG_MODEL.get(str(wcfg.log_model).lower())
    if log_model is None:
        raise ConfigError(
            f"logger.wandb.log_model: '{wcfg.log_model}' is not one of false, best, all"
        )
    if mode == "offline" and log_model:
        rank_zero_warn(
            f"logger.wandb.log_model={str(wcfg.log_model).lower()} needs online W&B; "
            "checkpoints are not uploaded offline"
        )
        log_model = False
    loggers.append(
        WandbLogger(
            save_dir=str(run_dir),
            project=wcfg.project,
            entity=wcfg.entity,
            group=wcfg.group,
            job_type=wcfg.job_type,
            tags=list(wcfg.tags) or None,
            name=f"{cfg.experiment}/{run_dir.name}",
            id=_wandb_id(run_dir),
            log_model=log_model,
            mode=mode,
        )
    )
    return loggers


# --------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------


def trainer_kwargs(cfg: DictConfig, spec: SystemSpec | None = None) -> dict[str, Any]:
    """``lightning.Trainer`` keyword arguments from ``cfg.trainer`` (same names), with a
    layer-sync plugin that keeps BatchNorm subclasses' own forward
    (``lightning_modules/layer_sync.py``) for ``sync_batchnorm``. What a system needs from DDP
    is given to the strategy the Trainer resolves (:func:`fit_ddp_to_system`)."""
    kwargs = lightning_kwargs(to_container(cfg.trainer))
    if kwargs["precision"] == "32":
        kwargs["precision"] = "32-true"
    check_strategy(cfg, spec)
    if kwargs["sync_batchnorm"]:
        kwargs["plugins"] = [SyncBatchNormLayers()]
    return kwargs


def check_strategy(cfg: DictConfig, spec: SystemSpec | None) -> None:
    """A system whose backward leaves parameters without gradient cannot run a DDP strategy
    that turns DDP's unused-parameter search off."""
    strategy = str(cfg.trainer.strategy)
    if spec is not None and spec.find_unused_parameters and strategy.endswith("_false"):
        raise ConfigError(
            f"trainer.strategy={strategy}: system '{spec.name}' leaves parameters without "
            "gradient in each backward, which DDP allows only with unused-parameter search; "
            f"use trainer.strategy={strategy.split('_find_unused')[0]}"
        )


def fit_ddp_to_system(strategy: Strategy, spec: SystemSpec | None) -> None:
    """Give a DDP strategy what the system needs, however DDP was chosen: ``ddp``,
    ``ddp_spawn``, ``ddp_fork``, a preset, or ``strategy=auto`` with several devices (which
    Lightning turns into plain ``ddp``). A system whose backward leaves parameters without
    gradient (``spec.find_unused_parameters``) gets DDP's unused-parameter search."""
    if spec is None or not spec.find_unused_parameters or not isinstance(strategy, DDPStrategy):
        return
    # The keyword arguments Lightning passes to DistributedDataParallel when it wraps the
    # module at fit time; the "*_find_unused_parameters_true" names fill in the same entry.
    ddp_kwargs: dict[str, Any] = strategy._ddp_kwargs
    ddp_kwargs["find_unused_parameters"] = True


def check_manual_optimization(cfg: DictConfig, module: L.LightningModule) -> None:
    """Lightning rejects Trainer-level clipping/accumulation under manual optimization."""
    if module.automatic_optimization:
        return
    t = cfg.trainer
    if t.gradient_clip_val is not None:
        raise ConfigError(
            f"trainer.gradient_clip_val={t.gradient_clip_val}: system '{cfg.system}' uses manual "
            "optimization and clips gradients itself (self.clip_gradients); set "
            "trainer.gradient_clip_val=null and use the system's own clipping key"
        )
    if t.accumulate_grad_batches != 1:
        raise ConfigError(
            f"trainer.accumulate_grad_batches={t.accumulate_grad_batches}: system '{cfg.system}' "
            "uses manual optimization, which Lightning cannot accumulate; set it to 1"
        )


def checkpoint_monitor(cfg: DictConfig, spec: SystemSpec | None) -> str | None:
    """``checkpoint.monitor``; ``auto`` asks the system (e.g. the task's main metric)."""
    monitor = cfg.checkpoint.monitor
    if monitor == "auto":
        if spec is None or spec.checkpoint_monitor is None:
            raise ConfigError(
                f"checkpoint.monitor=auto: system '{cfg.system}' names no metric; give one"
            )
        return spec.checkpoint_monitor(cfg)
    return monitor


def build_callbacks(
    cfg: DictConfig,
    run_dir: Path,
    with_logger: bool,
    checkpointing: bool = True,
    spec: SystemSpec | None = None,
) -> list[Callback]:
    """Checkpointing, LR monitor (with a real logger), progress bar, the suite callbacks, the
    media logger and the system's own callbacks."""
    c = cfg.checkpoint
    monitor = checkpoint_monitor(cfg, spec)
    callbacks: list[Callback] = [
        SuiteMetadata(cfg, run_dir),
        RNGState(),
        MetricsJSON(run_dir),
        NonFiniteLossStop(allow=bool(cfg.get("allow_nonfinite_loss", False))),
        MediaLogger(run_dir),
    ]
    if spec is not None and spec.callbacks is not None:
        callbacks += list(spec.callbacks(cfg))
    summaries = [(monitor, "max" if c.mode == "max" else "min")] if monitor else []
    if spec is not None and spec.summaries is not None:
        summaries += list(spec.summaries(cfg))
    callbacks.append(WandbSummaries(summaries))
    if cfg.trainer.compile:
        backend = cfg.trainer.compile if isinstance(cfg.trainer.compile, str) else None
        callbacks.append(CompileNetworks(backend))
    if checkpointing:
        best = ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename="epoch{epoch:03d}-step{step:06d}",
            monitor=monitor,
            mode=c.mode,
            save_top_k=c.save_top_k,
            save_last=c.save_last and not monitor,
            every_n_epochs=c.every_n_epochs,
            auto_insert_metric_name=False,
        )
        callbacks.insert(0, best)  # first: trainer.checkpoint_callback is the best one
        if c.save_last and monitor:
            # Lightning rewrites last.ckpt only when the monitored callback saves a new top-k
            # file; resume=last needs the latest epoch, so a second callback writes it always.
            latest = ModelCheckpoint(
                dirpath=run_dir / "checkpoints",
                filename=ModelCheckpoint.CHECKPOINT_NAME_LAST,
                monitor=None,
                save_top_k=1,
                every_n_epochs=c.every_n_epochs,
                enable_version_counter=False,
            )
            callbacks.insert(1, latest)
    if with_logger:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if cfg.trainer.enable_progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=1 if sys.stderr.isatty() else 50))
    return callbacks


def build_trainer(
    cfg: DictConfig,
    run_dir: Path,
    module: L.LightningModule,
    spec: SystemSpec | None = None,
    *,
    checkpointing: bool = True,
    extra_callbacks: Sequence[Callback] = (),
) -> L.Trainer:
    """The Trainer for ``cfg``: loggers, callbacks, ``default_root_dir=run_dir``.

    ``checkpointing=False`` (evaluation runs) leaves ``ModelCheckpoint`` out.

    Also logs the resolved config as hyperparameters to every logger and writes
    ``run_dir/config.yaml`` (rank 0).
    """
    check_manual_optimization(cfg, module)
    run_dir = Path(run_dir)
    kwargs = trainer_kwargs(cfg, spec)
    real_logging = not kwargs["fast_dev_run"]
    loggers = build_loggers(cfg, run_dir) if real_logging else []
    try:
        trainer = L.Trainer(
            **kwargs,
            default_root_dir=str(run_dir),
            logger=loggers or False,
            callbacks=[
                *build_callbacks(cfg, run_dir, real_logging, checkpointing, spec),
                *extra_callbacks,
            ],
            enable_checkpointing=checkpointing,
        )
    except (MisconfigurationException, ValueError, ModuleNotFoundError) as e:
        # Trainer.__init__ only checks its arguments: an unknown strategy/accelerator name is a
        # ValueError, an accelerator whose package is missing (tpu) a ModuleNotFoundError.
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"invalid trainer settings: {first}") from e
    fit_ddp_to_system(trainer.strategy, spec)
    set_matmul_precision(cfg.trainer.float32_matmul_precision, trainer)
    hparams = to_container(cfg)
    for logger in trainer.loggers:
        logger.log_hyperparams(hparams)
    if env_rank() == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(to_yaml(cfg))
    return trainer
