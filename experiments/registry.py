"""Systems (how to build a module and datamodule from a config) and experiments (YAML files).

A *system* is a :class:`SystemSpec`, registered lazily by import string in :data:`SYSTEMS` so
that ``python -m experiments list`` imports no deep-learning code. An experiment YAML may also
name an out-of-tree system directly as ``system: package.module:ATTR``.

An *experiment* is a YAML file ``configs/<name>.yaml`` with ``system:`` and an optional
``description:``; extra directories can be listed in ``SUITE_CONFIG_PATH`` (os.pathsep
separated, searched before the built-in directory).
"""

from __future__ import annotations

import difflib
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from experiments.config import ConfigError, RunConfig, load_yaml

if TYPE_CHECKING:
    import lightning as L
    from lightning.pytorch.callbacks import Callback
    from omegaconf import DictConfig

CONFIG_DIR = Path(__file__).parent / "configs"

BuildFn = Callable[["DictConfig", "dict | None"], "tuple[L.LightningModule, L.LightningDataModule]"]


@dataclass
class RunContext:
    """What a system's ``after_fit``/``after_eval`` hook gets to write its own outputs."""

    cfg: DictConfig
    run_dir: Path
    trainer: L.Trainer
    module: L.LightningModule
    datamodule: L.LightningDataModule
    metrics: dict[str, Any]
    checkpoint: dict | None = None


@dataclass
class SystemSpec:
    """How the entry point runs one system.

    Attributes:
        name: registry name, also written to the config's ``system`` key.
        config_cls: the system's config dataclass (a :class:`RunConfig` subclass).
        build: ``build(cfg, checkpoint) -> (module, datamodule)``; ``checkpoint`` is the loaded
            checkpoint dict when a run is rebuilt from one (eval, resume, derive), else None.
        datamodule: ``datamodule(cfg, checkpoint) -> datamodule`` alone, for the ``data``
            command (it needs ``data_summary()`` and ``write_preview(dir)``).
        validate: checks of the composed config, run once per command; raise
            :class:`ConfigError`; never changes the config.
        callbacks: ``callbacks(cfg) -> [Callback, ...]`` the system adds to every Trainer
            (the shared ones, media logger included, are always there).
        checkpoint_monitor: ``fn(cfg) -> metric or None`` when the monitored metric depends
            on the config (``checkpoint.monitor=auto``).
        summaries: ``fn(cfg) -> [(metric, "max"|"min"), ...]``: the system's headline metrics
            and their direction, summarised in wandb by their best value (besides the
            checkpoint's monitor, which always is).
        dashboard: ``fn(cfg) -> [experiments.dashboard.Section, ...]``: the wandb workspace
            a person watches (``python -m experiments dashboard``).
        find_unused_parameters: each backward leaves some parameters without gradient (one
            sub-network of a supernet, one player of a GAN): whatever DDP strategy the Trainer
            runs (``ddp``, ``ddp_spawn``, ... or ``auto`` with several devices) gets DDP's
            unused-parameter search, and ``*_find_unused_parameters_false`` is refused.
        after_fit / after_eval: hooks run (on every rank) after training / evaluation.
        commands: which built-in commands (``train``, ``eval``) the system supports.
        extra_commands: more commands, ``fn(cfg, args) -> exit code`` (e.g. derive);
            ``args`` are the command-line words that are not ``key=value`` overrides.
    """

    name: str
    config_cls: type[RunConfig]
    build: BuildFn
    datamodule: Callable[[DictConfig, dict | None], L.LightningDataModule] | None = None
    validate: Callable[[DictConfig], None] | None = None
    callbacks: Callable[[DictConfig], list[Callback]] | None = None
    checkpoint_monitor: Callable[[DictConfig], str | None] | None = None
    summaries: Callable[[DictConfig], list[tuple[str, str]]] | None = None
    dashboard: Callable[[DictConfig], list[Any]] | None = None
    find_unused_parameters: bool = False
    after_fit: Callable[[RunContext], None] | None = None
    after_eval: Callable[[RunContext], None] | None = None
    commands: tuple[str, ...] = ("train", "eval")
    extra_commands: dict[str, Callable[[DictConfig, list[str]], int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (isinstance(self.config_cls, type) and issubclass(self.config_cls, RunConfig)):
            raise TypeError(f"SystemSpec {self.name!r}: config_cls must subclass RunConfig")


@dataclass
class DemoResult:
    """What a system's demo part reports for the closing table of ``make demo``.

    ``rows`` are ``(what was trained, its figures)`` pairs; ``outputs`` are
    ``(what to look at, path)`` pairs (pictures, videos, run folders, wandb runs).
    """

    system: str
    rows: list[tuple[str, str]] = field(default_factory=list)
    outputs: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


DemoFn = Callable[[list[str]], DemoResult]

# name -> "module:ATTR" (imported on first use) or a SystemSpec
SYSTEMS: dict[str, str | SystemSpec] = {
    "textnas_train": "experiments.systems.textnas.retrain:SPEC",
    "textnas_search": "experiments.systems.textnas.search:SPEC",
    "alphagan_search": "experiments.systems.alphagan.search:SPEC",
    "alphagan_train": "experiments.systems.alphagan.train:SPEC",
    "dualtalker": "experiments.systems.dualtalker.train:SPEC",
}

# A system family's demo part: name -> "module:function" taking the demo's key=value overrides.
DEMOS: dict[str, str | DemoFn] = {
    "textnas": "experiments.systems.textnas.demo:demo",
    "alphagan": "experiments.systems.alphagan.demo:demo",
    "dualtalker": "experiments.systems.dualtalker.demo:demo",
}


def get_demo(name: str) -> DemoFn:
    """The demo part registered as ``name``."""
    entry = DEMOS.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, sorted(DEMOS), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(
            f"unknown demo system '{name}'; {hint}systems: {', '.join(sorted(DEMOS))}"
        )
    if isinstance(entry, str):
        module_name, _, attr = entry.partition(":")
        entry = getattr(importlib.import_module(module_name), attr)
        DEMOS[name] = entry
    return entry


def register_system(spec: SystemSpec, *, replace: bool = True) -> SystemSpec:
    """Register a system object (tests, notebooks, plugins)."""
    if not replace and spec.name in SYSTEMS:
        raise ValueError(f"system {spec.name!r} is already registered")
    SYSTEMS[spec.name] = spec
    return spec


def _import(target: str, name: str) -> SystemSpec:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise ConfigError(f"system '{name}': module '{module_name}' not found") from e
        raise ConfigError(
            f"system '{name}' needs the package '{e.name}', which is not installed"
        ) from e
    spec = getattr(module, attr or "SPEC", None)
    if not isinstance(spec, SystemSpec):
        raise ConfigError(f"system '{name}': {target} is not a SystemSpec")
    return spec


def get_system(name: str) -> SystemSpec:
    """The :class:`SystemSpec` registered as ``name`` (or imported from ``module:ATTR``)."""
    entry = SYSTEMS.get(name)
    if entry is None and ":" in name:
        entry = name
    if entry is None:
        valid = sorted(SYSTEMS)
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; registered: {', '.join(valid)}"
        raise ConfigError(f"unknown system '{name}'{hint}")
    if isinstance(entry, str):
        entry = _import(entry, name)
        if name in SYSTEMS:
            SYSTEMS[name] = entry
    return entry


def config_dirs() -> list[Path]:
    """Experiment YAML directories: SUITE_CONFIG_PATH entries first, then the built-in one."""
    extra = [Path(p) for p in os.environ.get("SUITE_CONFIG_PATH", "").split(os.pathsep) if p]
    return [*extra, CONFIG_DIR]


@dataclass(frozen=True)
class ExperimentInfo:
    """One experiment YAML."""

    name: str
    system: str
    description: str
    path: Path


def _experiment_files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in config_dirs():
        if d.is_dir():
            for path in sorted(d.glob("*.yaml")):
                found.setdefault(path.stem, path)
    return found


def list_experiments() -> list[ExperimentInfo]:
    """All experiments, sorted by name (reads only the YAML files)."""
    out = []
    for name, path in sorted(_experiment_files().items()):
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError:
            data = {"description": "(unreadable YAML)"}
        if not isinstance(data, dict):
            data = {}
        out.append(
            ExperimentInfo(
                name=name,
                system=str(data.get("system", "?")),
                description=str(data.get("description", "") or "").strip(),
                path=path,
            )
        )
    return out


def experiment_yaml(name: str) -> Path:
    """Path of experiment ``name``'s YAML, or a ConfigError listing the valid names."""
    files = _experiment_files()
    if name in files:
        return files[name]
    valid = sorted(files)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    listing = (
        ", ".join(valid)
        if valid
        else "none (no YAML in " + ", ".join(map(str, config_dirs())) + ")"
    )
    raise ConfigError(f"unknown experiment '{name}'; {hint}valid experiments: {listing}")


def experiment_system(name: str) -> str:
    """The ``system:`` named by an experiment YAML."""
    path = experiment_yaml(name)
    system = load_yaml(path).get("system")
    if not system:
        raise ConfigError(f"{path}: missing 'system:' (one of {', '.join(sorted(SYSTEMS))})")
    return str(system)
