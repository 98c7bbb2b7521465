"""Typed run configuration: dataclass schemas, composition and validation.

A run's configuration is built in layers, each merged onto the previous one:

1. the defaults of the schema dataclass (a subclass of :class:`RunConfig`);
2. optional ``base`` values (the experiment name, or a checkpoint's stored config);
3. each experiment YAML file; a YAML may begin with ``defaults: [trainer/cpu, ...]`` naming
   presets under ``configs/presets/`` that are merged before the file's own keys;
4. presets named on the command line with ``preset=a,b``;
5. ``key=value`` overrides (OmegaConf dotlist syntax, values parsed as YAML).

Every error is a :class:`ConfigError` (:mod:`experiments.config_errors`) with a one-line message
that names the full key, e.g.
``unknown config key 'trainer.max_epochz'; did you mean 'trainer.max_epochs'?``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from experiments.config_errors import (  # noqa: F401 (re-exported: the config API in one place)
    ConfigError,
    check_keys,
    fmt_value,
    is_user_error,
    rewrite_error,
    suggest_key,
    type_name,
    valid_keys,
)
from experiments.trainer_config import OWNED, TrainerConfig, owned_key_error

PRESETS_DIR = Path(__file__).parent / "configs" / "presets"
PRECISIONS = ("32", "32-true", "16-mixed", "bf16-mixed", "bf16-true", "16-true", "64-true")
WANDB_MODES = ("auto", "online", "offline", "disabled")


# --------------------------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------------------------


@dataclass
class WandbConfig:
    """Weights & Biases logger; ``mode=auto`` follows ``WANDB_MODE``, else online if logged in."""

    mode: str = "auto"
    project: str = "nas-suite"
    entity: Optional[str] = None
    group: Optional[str] = None  # runs that belong together (a pipeline's stages, a sweep)
    job_type: Optional[str] = None  # the run's stage: search, derive, retrain, eval, render
    tags: list[str] = field(default_factory=list)
    log_model: str = "false"  # false | best (checkpoints at the end) | all (as saved)


@dataclass
class LoggerConfig:
    """Loggers of a run. A CSV logger is always on."""

    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass
class CheckpointConfig:
    """``ModelCheckpoint`` options."""

    monitor: Optional[str] = "val/loss"
    mode: str = "min"
    save_top_k: int = 1
    save_last: bool = True
    every_n_epochs: int = 1


@dataclass
class RunConfig:
    """Base of every system's config; systems add ``data``, ``model``, ``optim``, ... fields."""

    experiment: str = MISSING
    system: str = MISSING
    description: str = ""
    seed: int = 1234
    output_dir: str = "outputs"
    resume: Optional[str] = None  # "last", "auto" (the default in a cluster job) or a path
    ckpt: Optional[str] = None  # checkpoint to evaluate
    # A NaN/infinite training loss stops the run (an error naming the step, no checkpoint
    # after it); true: warn once and go on.
    allow_nonfinite_loss: bool = False
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)


# --------------------------------------------------------------------------------------------
# Loading YAML, presets and overrides
# --------------------------------------------------------------------------------------------


def preset_dirs() -> list[Path]:
    """Directories searched for presets: ``presets/`` of each SUITE_CONFIG_PATH dir, then ours."""
    extra = [
        Path(p) / "presets" for p in os.environ.get("SUITE_CONFIG_PATH", "").split(os.pathsep) if p
    ]
    return [*extra, PRESETS_DIR]


def available_presets() -> list[str]:
    """Names of all presets, e.g. ``trainer/cpu``."""
    names = set()
    for d in preset_dirs():
        if d.is_dir():
            names.update(p.relative_to(d).with_suffix("").as_posix() for p in d.rglob("*.yaml"))
    return sorted(names)


def preset_path(name: str) -> Path:
    """Path of preset ``name`` (``trainer/cpu``), or a ConfigError listing the valid ones."""
    name = name.strip().removesuffix(".yaml")
    for d in preset_dirs():
        path = d / f"{name}.yaml"
        if path.is_file():
            return path
    valid = available_presets()
    close = difflib.get_close_matches(name, valid, n=1)
    hint = (
        f"; did you mean '{close[0]}'?" if close else f"; available: {', '.join(valid) or 'none'}"
    )
    raise ConfigError(f"unknown preset '{name}'{hint}")


def load_yaml(path: Path) -> dict:
    """Read a YAML mapping (an empty file is ``{}``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.load(path.read_text(), Loader=_yaml_loader())
    except yaml.YAMLError as e:
        line = f" line {e.problem_mark.line + 1}" if getattr(e, "problem_mark", None) else ""
        raise ConfigError(f"cannot parse {path}{line}: {getattr(e, 'problem', e)}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def _split_defaults(data: dict, path: Path) -> tuple[list[str], dict]:
    data = dict(data)
    defaults = data.pop("defaults", None) or []
    if isinstance(defaults, str):
        defaults = [defaults]
    if not isinstance(defaults, list) or not all(isinstance(d, str) for d in defaults):
        raise ConfigError(f"{path}: 'defaults' must be a list of preset names like [trainer/cpu]")
    return defaults, data


def parse_override(item: str) -> tuple[str, Any]:
    """``'a.b=[1, 2]'`` -> ``('a.b', [1, 2])``; values are parsed as YAML."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not re.fullmatch(r"[A-Za-z_][\w\-]*(\.[A-Za-z_][\w\-]*)*", key):
        raise ConfigError(f"override '{item}' must look like key=value (e.g. trainer.max_epochs=3)")
    if not raw.strip():
        return key, ""  # `key=` is the empty string; write `key=null` for None
    try:
        value = yaml.load(raw, Loader=_yaml_loader())
    except yaml.YAMLError as e:
        raise ConfigError(f"override '{item}': cannot parse value {raw!r} as YAML") from e
    return key, value


class _YAMLLoader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.2; YAML 1.1 wants ``1.0e-3``)."""


_YAMLLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _yaml_loader() -> Any:
    return _YAMLLoader


def _nest(key: str, value: Any) -> dict:
    out: Any = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return out


# --------------------------------------------------------------------------------------------
# Composition
# --------------------------------------------------------------------------------------------


def _merge(cfg: DictConfig, data: Mapping, origin: str) -> DictConfig:
    check_keys(cfg, data, "", cfg, origin)
    try:
        return OmegaConf.merge(cfg, OmegaConf.create(dict(data)))
    except OmegaConfBaseException as e:
        raise rewrite_error(e, cfg, origin) from e


def _merge_preset(cfg: DictConfig, name: str, seen: tuple[str, ...]) -> DictConfig:
    if name in seen:
        raise ConfigError(f"preset cycle: {' -> '.join([*seen, name])}")
    path = preset_path(name)
    defaults, data = _split_defaults(load_yaml(path), path)
    for sub in defaults:
        cfg = _merge_preset(cfg, sub, (*seen, name))
    return _merge(cfg, data, f" (in preset {name}: {path})")


def compose(
    schema: type,
    yaml_files: Sequence[Path] = (),
    overrides: Sequence[str] = (),
    *,
    base: Mapping | None = None,
    base_origin: str = "",
) -> DictConfig:
    """Build a validated config: schema defaults <- base <- YAMLs <- ``preset=`` <- overrides.

    Args:
        schema: a dataclass (usually a :class:`RunConfig` subclass).
        yaml_files: experiment YAMLs, merged in order (each with its ``defaults:`` presets).
        overrides: ``key=value`` strings; ``preset=a,b`` merges presets before the others.
        base: values merged right after the defaults (experiment name, a stored config).
        base_origin: where ``base`` came from, for error messages.

    Raises:
        ConfigError: unknown key, wrong type, missing required value, invalid value.
    """
    try:
        cfg = OmegaConf.structured(schema)
    except OmegaConfBaseException as e:  # a schema bug, not a user error
        raise TypeError(f"invalid config schema {schema.__name__}: {e}") from e
    if base:
        cfg = _merge(cfg, base, f" ({base_origin})" if base_origin else "")
    for path in yaml_files:
        defaults, data = _split_defaults(load_yaml(path), Path(path))
        for name in defaults:
            cfg = _merge_preset(cfg, name, ())
        cfg = _merge(cfg, data, f" (in {path})")
    parsed = [parse_override(o) for o in overrides]
    for key, value in parsed:
        if key == "preset":
            names = value if isinstance(value, list) else str(value).split(",")
            for name in names:
                cfg = _merge_preset(cfg, str(name), ())
    for key, value in parsed:
        if key != "preset":
            cfg = _merge(cfg, _nest(key, value), "")
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as e:
        raise rewrite_error(e, cfg, " (while resolving ${...} interpolations)") from e
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(
            f"missing required config value(s): {', '.join(missing)} "
            f"(set in the experiment YAML or as {missing[0]}=...)"
        )
    if isinstance(schema, type) and issubclass(schema, RunConfig):
        check_run_config(cfg)
    return cfg


def check_run_config(cfg: DictConfig) -> None:
    """Value checks for the generic sections (types are already checked by OmegaConf)."""
    t = cfg.trainer
    for name in OWNED:
        if t[name] is not None:
            raise ConfigError(owned_key_error(name))
    if str(t.precision) not in PRECISIONS:
        raise ConfigError(
            f"trainer.precision: unsupported value '{t.precision}'; "
            f"use one of {', '.join(PRECISIONS)}"
        )
    devices = t.devices
    if isinstance(devices, ListConfig):
        devices = list(devices)
    ok = (
        (isinstance(devices, int) and not isinstance(devices, bool) and devices >= -1)
        or (
            isinstance(devices, str)
            and re.fullmatch(r"auto|-1|\d+(\s*,\s*\d+)*,?", devices.strip())
        )
        or (isinstance(devices, list) and devices and all(isinstance(d, int) for d in devices))
    )
    if not ok:
        raise ConfigError(
            "trainer.devices: expected an int, 'auto', a string like '0,1' or a list of "
            f"device ids, got {fmt_value(devices)}"
        )
    fdr = t.fast_dev_run
    if not (isinstance(fdr, bool) or (isinstance(fdr, int) and fdr >= 0)):
        raise ConfigError(f"trainer.fast_dev_run: expected bool or int >= 0, got {fmt_value(fdr)}")
    _one_of("trainer.gradient_clip_algorithm", t.gradient_clip_algorithm, ("norm", "value"))
    if t.float32_matmul_precision is not None:
        _one_of(
            "trainer.float32_matmul_precision",
            t.float32_matmul_precision,
            ("highest", "high", "medium"),
        )
    if not isinstance(t.compile, bool | str) or t.compile == "":
        raise ConfigError(
            f"trainer.compile: expected true, false or a torch.compile backend name, got "
            f"{fmt_value(t.compile)}"
        )
    _one_of("logger.wandb.mode", cfg.logger.wandb.mode, WANDB_MODES)
    _one_of("checkpoint.mode", cfg.checkpoint.mode, ("min", "max"))
    for key in ("num_nodes", "accumulate_grad_batches", "log_every_n_steps"):
        if t[key] < 1:
            raise ConfigError(f"trainer.{key}: must be >= 1, got {t[key]}")
    for key in (
        "limit_train_batches",
        "limit_val_batches",
        "limit_test_batches",
        "val_check_interval",
    ):
        v = t[key]
        if v is not None and (v < 0 or (isinstance(v, float) and v > 1.0 and not v.is_integer())):
            raise ConfigError(
                f"trainer.{key}: expected a fraction in [0, 1] (float) or a number of batches "
                f"(int), got {v}"
            )
    if not cfg.experiment or not re.fullmatch(r"[\w.\-]+", str(cfg.experiment)):
        raise ConfigError(f"experiment: invalid name {cfg.experiment!r} (letters, digits, _ . -)")


def require_positive(cfg: DictConfig, *keys: str) -> None:
    """Each dotted ``key`` of ``cfg`` at least 1: ``model.width must be >= 1, got 0``."""
    for key in keys:
        value = OmegaConf.select(cfg, key)
        if value < 1:
            raise ConfigError(f"{key} must be >= 1, got {value}")


def _one_of(key: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: expected one of {', '.join(allowed)}, got {fmt_value(value)}")


# --------------------------------------------------------------------------------------------
# Output helpers
# --------------------------------------------------------------------------------------------


def to_container(cfg: DictConfig) -> dict:
    """Plain, resolved ``dict`` of a config (for loggers and checkpoints)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]


def to_yaml(cfg: DictConfig | Mapping) -> str:
    """Resolved YAML text of a config, keys in schema order."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(dict(cfg))
    return OmegaConf.to_yaml(cfg, resolve=True)
