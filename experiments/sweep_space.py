"""A sweep file: the search space over the suite's own config keys, read and checked.

A sweep file is YAML::

    metric: auto          # the experiment's checkpoint.monitor (default), or any logged key
    direction: auto       # maximize | minimize; auto follows checkpoint.mode
    sampler: tpe          # tpe | random | grid (grid needs choices only)
    n_trials: 8           # the study's total; the command line's n_trials= wins
    seeds: 1              # every configuration run with this many seeds (mean ± std)
    report: [val/fdd]     # more logged metrics for the table (each trial's last value)
    params:
      optim.lr: {low: 1.0e-4, high: 1.0e-2, log: true}   # a float range (log-uniform)
      model.width: {low: 16, high: 64, step: 16}         # ints: an int range
      model.dropout: [0.0, 0.1, 0.3]                     # choices of one key
      variant:                                           # named bundles of several keys
        choices:
          faceformer: {model.lambda_dual: 0.0}
          dualtalker: {}

Every key a parameter sets is checked against the experiment's typed config before a trial
runs (an unknown key names the closest valid one, a value of the wrong type names the key), so
a sweep fails in its first second rather than in its tenth trial.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.config import ConfigError, load_yaml

FILE_KEYS = ("metric", "direction", "sampler", "n_trials", "seeds", "report", "params")
RANGE_KEYS = ("low", "high", "log", "step")
SAMPLERS = ("tpe", "random", "grid")


@dataclass(frozen=True)
class Param:
    """One dimension of the search space.

    ``choices`` (a list of values of ``name``, or a dict of named bundles ``{label: {key:
    value}}``), or a numeric range ``low``..``high`` (``integer`` when both ends are ints).
    """

    name: str
    choices: tuple[Any, ...] | None = None
    bundles: dict[str, dict[str, Any]] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False

    def overrides(self, value: Any) -> dict[str, Any]:
        """The config keys this parameter sets for one sampled ``value``."""
        if self.bundles is not None:
            return dict(self.bundles[value])
        return {self.name: value}

    def probe_values(self) -> list[Any]:
        """Values that together exercise every key and both ends of a range."""
        if self.bundles is not None:
            return list(self.bundles)
        if self.choices is not None:
            return list(self.choices)
        return [self.low, self.high]

    def suggest(self, trial: Any) -> Any:
        """Ask an Optuna trial for a value."""
        if self.choices is not None or self.bundles is not None:
            options = list(self.bundles) if self.bundles is not None else list(self.choices)
            return trial.suggest_categorical(self.name, options)
        if self.integer:
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def wandb(self) -> dict[str, Any]:
        """This parameter in a wandb sweep's ``parameters`` section."""
        if self.bundles is not None:
            raise ConfigError(
                f"sweep parameter '{self.name}': named bundles have no wandb form; "
                "give each key its own parameter"
            )
        if self.choices is not None:
            return {"values": list(self.choices)}
        if self.integer:
            if self.log:
                return {
                    "distribution": "q_log_uniform_values",
                    "min": self.low,
                    "max": self.high,
                    "q": int(self.step or 1),
                }
            if self.step:
                return {
                    "distribution": "q_uniform",
                    "min": self.low,
                    "max": self.high,
                    "q": self.step,
                }
            return {"distribution": "int_uniform", "min": int(self.low), "max": int(self.high)}
        kind = "log_uniform_values" if self.log else "uniform"
        return {"distribution": kind, "min": self.low, "max": self.high}


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file."""

    path: Path
    params: tuple[Param, ...]
    metric: str = "auto"
    direction: str = "auto"
    sampler: str = "tpe"
    n_trials: int = 8
    seeds: int = 1
    report: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.path.stem


def _error(path: Path, message: str) -> ConfigError:
    return ConfigError(f"{path}: {message}")


def _closest(word: str, options: Sequence[str]) -> str:
    match = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean '{match[0]}'?)" if match else f" (valid: {', '.join(options)})"


def _number(path: Path, name: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _error(path, f"params.{name}.{key}: expected a finite number, got {value!r}")
    return value


def _range(path: Path, name: str, spec: Mapping[str, Any]) -> Param:
    for key in spec:
        if key not in RANGE_KEYS:
            raise _error(path, f"params.{name}: unknown field '{key}'{_closest(key, RANGE_KEYS)}")
    if "low" not in spec or "high" not in spec:
        raise _error(path, f"params.{name}: a range needs both 'low' and 'high'")
    low = _number(path, name, "low", spec["low"])
    high = _number(path, name, "high", spec["high"])
    if not low < high:
        raise _error(path, f"params.{name}: low ({low}) must be below high ({high})")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise _error(path, f"params.{name}.log: expected true or false, got {log!r}")
    if log and low <= 0:
        raise _error(path, f"params.{name}: a log range needs low > 0, got {low}")
    step = spec.get("step")
    if step is not None and _number(path, name, "step", step) <= 0:
        raise _error(path, f"params.{name}.step: must be positive, got {step}")
    integer = isinstance(low, int) and isinstance(high, int) and isinstance(step, int | None)
    if log and step is not None and not integer:
        raise _error(path, f"params.{name}: a float range cannot have both log and step")
    return Param(name, low=low, high=high, log=log, step=step, integer=integer)


def _choices(path: Path, name: str, choices: Any) -> Param:
    if isinstance(choices, Mapping):
        if not choices:
            raise _error(path, f"params.{name}.choices: empty")
        for label, bundle in choices.items():
            if not isinstance(bundle, Mapping):
                raise _error(
                    path,
                    f"params.{name}.choices.{label}: a named choice is a mapping of "
                    f"config keys to values, got {bundle!r}",
                )
        return Param(name, bundles={str(k): dict(v) for k, v in choices.items()})
    if not isinstance(choices, list) or not choices:
        raise _error(path, f"params.{name}: choices must be a non-empty list, got {choices!r}")
    return Param(name, choices=tuple(choices))


def _param(path: Path, name: str, spec: Any) -> Param:
    if isinstance(spec, list):
        return _choices(path, name, spec)
    if isinstance(spec, Mapping) and "choices" in spec:
        if set(spec) != {"choices"}:
            extra = sorted(set(spec) - {"choices"})
            raise _error(path, f"params.{name}: 'choices' takes no other fields, got {extra}")
        return _choices(path, name, spec["choices"])
    if isinstance(spec, Mapping):
        return _range(path, name, spec)
    raise _error(
        path,
        f"params.{name}: expected a list of choices or a range {{low, high[, log, step]}}, "
        f"got {spec!r}",
    )


def _positive_int(path: Path, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _error(path, f"{key}: expected a positive integer, got {value!r}")
    return value


def read_sweep(path: str | Path) -> SweepSpec:
    """Read and check a sweep file (its shape; the keys are checked by :func:`check_keys`)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"sweep={path}: is a folder, not a sweep YAML file")
    if not path.is_file():
        raise ConfigError(f"sweep={path}: no such file")
    data = load_yaml(path)
    if not isinstance(data, Mapping):
        raise _error(path, "a sweep file is a mapping with 'params' (see the docs)")
    for key in data:
        if key not in FILE_KEYS:
            raise _error(path, f"unknown key '{key}'{_closest(str(key), FILE_KEYS)}")
    params = data.get("params") or {}
    if not isinstance(params, Mapping):
        raise _error(path, f"params: expected a mapping of keys to ranges, got {params!r}")
    if not params:
        raise _error(path, "the search space is empty: 'params' names no key")
    parsed = tuple(_param(path, str(name), spec) for name, spec in params.items())
    sampler = data.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise _error(path, f"sampler: '{sampler}' is not one of {', '.join(SAMPLERS)}")
    if sampler == "grid" and any(p.choices is None and p.bundles is None for p in parsed):
        raise _error(path, "sampler: grid needs every parameter as choices, not a range")
    report = data.get("report") or []
    if not isinstance(report, list) or not all(isinstance(k, str) for k in report):
        raise _error(path, f"report: expected a list of metric names, got {report!r}")
    direction = data.get("direction", "auto")
    if direction not in ("auto", "maximize", "minimize"):
        raise _error(path, f"direction: '{direction}' is not auto, maximize or minimize")
    return SweepSpec(
        path=path,
        params=parsed,
        metric=str(data.get("metric", "auto")),
        direction=direction,
        sampler=sampler,
        n_trials=_positive_int(path, "n_trials", data.get("n_trials", 8)),
        seeds=_positive_int(path, "seeds", data.get("seeds", 1)),
        report=tuple(report),
    )


def check_keys(spec: SweepSpec, compose: Callable[[list[str]], Any]) -> None:
    """Compose the experiment with every parameter's probe values: unknown keys and values of
    the wrong type fail here, named by the typed config (with the closest valid key)."""
    for param in spec.params:
        for value in param.probe_values():
            overrides = [f"{k}={format_value(v)}" for k, v in param.overrides(value).items()]
            try:
                compose(overrides)
            except ConfigError as exc:
                raise _error(spec.path, f"params.{param.name}: {exc}") from None


def format_value(value: Any) -> str:
    """A value as a ``key=value`` override's right-hand side (YAML)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).strip()
