"""``python -m experiments sweep EXPERIMENT sweep=FILE.yaml [n_trials=N] [seeds=K] [k=v ...]``.

An Optuna study over the suite's own config keys (the search space:
:mod:`experiments.sweep_space`), optimising the experiment's monitored metric in its direction.
Each trial is an ordinary ``train`` run with the sampled values as overrides, in its own run
folder under the sweep's folder ``<output_dir>/<experiment>/sweeps/<sweep name>/``. With one
seed, the monitored metric is reported to Optuna after every validation and unpromising trials
are pruned (median rule).

Storage is an SQLite file in the sweep folder; ``sweep.storage=<database URL>`` shares one study
between ``sweep`` processes on several machines (Optuna's RDB storage). ``n_trials`` is the
study's total: running the command again continues the study up to it.

``backend=wandb`` writes the same space as a wandb sweep YAML whose command is
``python -m experiments train EXPERIMENT ${args_no_hyphens}`` (for ``wandb sweep`` / agents).
"""

from __future__ import annotations

import csv
import logging
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import yaml

from experiments.config import ConfigError, parse_override
from experiments.sweep_space import SweepSpec, check_keys, format_value, read_sweep

# command-line keys of `sweep` itself; every other key=value is an override of each trial
SWEEP_KEYS = ("sweep", "n_trials", "seeds", "backend", "sweep.storage", "sweep.name")
log = logging.getLogger(__name__)


@dataclass
class SweepArgs:
    """The ``sweep`` command's own keys, split from the trials' overrides."""

    file: str
    n_trials: int | None
    seeds: int | None
    backend: str
    storage: str | None
    name: str | None
    overrides: list[str]


def split_args(words: Sequence[str]) -> SweepArgs:
    own: dict[str, Any] = {}
    rest: list[str] = []
    for word in words:
        key = word.partition("=")[0].strip()
        if key in SWEEP_KEYS:
            own[key] = parse_override(word)[1]
        elif key.startswith("sweep."):
            import difflib

            match = difflib.get_close_matches(key, SWEEP_KEYS, n=1)
            hint = f" (did you mean '{match[0]}'?)" if match else ""
            raise ConfigError(f"unknown sweep key '{key}'{hint}")
        else:
            rest.append(word)
    if "sweep" not in own:
        raise ConfigError("sweep: give the search space, e.g. sweep=sweeps/lr.yaml")
    for key in ("n_trials", "seeds"):
        value = own.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ConfigError(f"{key}: expected a positive integer, got {value!r}")
    backend = own.get("backend", "optuna")
    if backend not in ("optuna", "wandb"):
        raise ConfigError(f"backend: '{backend}' is not optuna or wandb")
    return SweepArgs(
        file=str(own["sweep"]),
        n_trials=own.get("n_trials"),
        seeds=own.get("seeds"),
        backend=backend,
        storage=own.get("sweep.storage"),
        name=own.get("sweep.name"),
        overrides=rest,
    )


def _objective_of(experiment: str, spec: SweepSpec, overrides: list[str]) -> tuple[str, str, bool]:
    """The metric to optimise, its direction, and whether it is the checkpoint's monitor in the
    checkpoint's direction (then a trial's value is its best checkpoint's score, else the last)."""
    from experiments.run import compose_experiment
    from experiments.trainer import checkpoint_monitor

    system, cfg = compose_experiment(experiment, overrides, command="train")
    monitor = checkpoint_monitor(cfg, system)
    metric = monitor if spec.metric == "auto" else spec.metric
    if not metric:
        raise ConfigError(
            f"{spec.path}: experiment '{experiment}' monitors no metric; set 'metric:' "
            "(and 'direction:') in the sweep file"
        )
    mode_direction = "maximize" if cfg.checkpoint.mode == "max" else "minimize"
    direction = mode_direction if spec.direction == "auto" else spec.direction
    return metric, direction, metric == monitor and direction == mode_direction


class OptunaReport(L.Callback):
    """Reports ``metric`` after every validation; stops the run when Optuna prunes it."""

    def __init__(self, trial: Any, metric: str) -> None:
        self.trial, self.metric, self.pruned = trial, metric, False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.metric not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.metric])
        self.trial.report(value, step=trainer.current_epoch)
        if self.trial.should_prune():
            self.pruned = True
            trainer.should_stop = True


def _trial_value(metrics: dict[str, dict[str, Any]], metric: str, use_best: bool) -> float:
    fit = metrics.get("fit", {})
    best = fit.get("best_model_score") if use_best else None
    value = best if best is not None else fit.get(metric)
    if value is None:
        raise ConfigError(f"the run logged no '{metric}': set 'metric:' in the sweep file")
    return float(value)


def _sampler(spec: SweepSpec, seed: int) -> Any:
    import optuna

    if spec.sampler == "grid":
        space = {p.name: list(p.bundles or p.choices) for p in spec.params}
        return optuna.samplers.GridSampler(space, seed=seed)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def open_study(spec: SweepSpec, args: SweepArgs, sweep_dir: Path, direction: str) -> Any:
    import optuna
    import sqlalchemy.exc

    storage = args.storage or f"sqlite:///{sweep_dir / 'study.db'}"
    name = args.name or spec.name
    if args.storage is None:
        sweep_dir.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.create_study(
            study_name=name,
            storage=storage,
            direction=direction,
            sampler=_sampler(spec, seed=0),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
            load_if_exists=True,
        )
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"sweep.storage={storage}: cannot open the study: {first}") from None


@dataclass
class Objective:
    """What every trial optimises (see :func:`_objective_of`)."""

    metric: str
    direction: str
    use_best: bool


def _run_trial(
    trial: Any, experiment: str, spec: SweepSpec, args: SweepArgs, goal: Objective, sweep_dir: Path
) -> float:
    import optuna

    from experiments.run import train

    overrides: dict[str, Any] = {}
    for param in spec.params:
        overrides.update(param.overrides(param.suggest(trial)))
    trial_dir = sweep_dir / f"trial_{trial.number:03d}"
    seeds = args.seeds or spec.seeds
    values, runs, reported = [], [], {}
    for i in range(seeds):
        words = [*args.overrides, *(f"{k}={format_value(v)}" for k, v in overrides.items())]
        words.append(f"output_dir={trial_dir}")
        if seeds > 1:
            words.append(f"seed={i}")
        report = OptunaReport(trial, goal.metric) if seeds == 1 else None
        result = train(experiment, words, extra_callbacks=[report] if report else ())
        runs.append(str(result.run_dir))
        trial.set_user_attr("run_dirs", runs)
        if report is not None and report.pruned:
            raise optuna.TrialPruned()
        values.append(_trial_value(result.metrics, goal.metric, goal.use_best))
        for key in spec.report:
            reported.setdefault(key, []).append(_trial_value(result.metrics, key, False))
    trial.set_user_attr("values", values)
    trial.set_user_attr("report", reported)
    trial.set_user_attr("overrides", {k: format_value(v) for k, v in overrides.items()})
    mean = statistics.fmean(values)
    trial.set_user_attr("std", statistics.pstdev(values) if len(values) > 1 else 0.0)
    return mean


def _table(study: Any, metric: str) -> list[dict[str, Any]]:
    rows = []
    for t in study.trials:
        values = t.user_attrs.get("values") or []
        std = t.user_attrs.get("std")
        row = {"trial": t.number, "state": t.state.name.lower()}
        row.update({k: format_value(v) for k, v in t.params.items()})
        value = "" if t.value is None else f"{t.value:.4f}"
        if value and len(values) > 1:
            value += f" ± {std:.4f} (n={len(values)})"
        row[metric] = value
        for key, got in (t.user_attrs.get("report") or {}).items():
            row[key] = _mean_std(got)
        row["run"] = (t.user_attrs.get("run_dirs") or [""])[0]
        rows.append(row)
    return rows


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.fmean(values):.4f} ± {statistics.pstdev(values):.4f}"


def _write_outputs(study: Any, metric: str, sweep_dir: Path) -> Path | None:
    rows = _table(study, metric)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with open(sweep_dir / "trials.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    widths = {k: max(len(k), *(len(str(r.get(k, ""))) for r in rows)) for k in keys if k != "run"}
    print("  ".join(f"{k:<{w}}" for k, w in widths.items()))
    for row in rows:
        print("  ".join(f"{str(row.get(k, '')):<{w}}" for k, w in widths.items()))
    done = [t for t in study.trials if t.value is not None and math.isfinite(t.value)]
    if not done:
        print("no trial completed")
        return None
    best = study.best_trial
    overrides = best.user_attrs.get("overrides", {})
    (sweep_dir / "best.yaml").write_text(
        yaml.safe_dump({"trial": best.number, metric: best.value, "overrides": overrides})
    )
    print(
        f"best: trial {best.number}, {metric} {best.value:.4f}: "
        + " ".join(f"{k}={v}" for k, v in overrides.items())
    )
    return _plot(study, metric, sweep_dir)


def _plot(study: Any, metric: str, sweep_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [t for t in study.trials if t.value is not None]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([t.number for t in done], [t.value for t in done], "o", label="trial")
    better = max if study.direction.name == "MAXIMIZE" else min
    running, best = [], None
    for t in done:
        best = t.value if best is None else better(best, t.value)
        running.append(best)
    ax.plot([t.number for t in done], running, "-", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    ax.set_title(f"{study.study_name}: {study.direction.name.lower()} {metric}")
    ax.legend()
    path = sweep_dir / "history.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _sweep_dir(experiment: str, args: SweepArgs, spec: SweepSpec) -> Path:
    from experiments.run import compose_experiment

    _, cfg = compose_experiment(experiment, args.overrides, command="train")
    return Path(cfg.output_dir) / experiment / "sweeps" / (args.name or spec.name)


def export_wandb(
    experiment: str, spec: SweepSpec, args: SweepArgs, metric: str, direction: str, sweep_dir: Path
) -> Path:
    """Write the sweep as a wandb sweep YAML; its command trains ``experiment`` per trial."""
    method = {"tpe": "bayes", "random": "random", "grid": "grid"}[spec.sampler]
    command = ["${env}", "python", "-m", "experiments", "train", experiment, *args.overrides]
    command.append("${args_no_hyphens}")
    data = {
        "method": method,
        "metric": {"name": metric, "goal": direction},
        "parameters": {p.name: p.wandb() for p in spec.params},
        "command": command,
    }
    path = sweep_dir / "wandb_sweep.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def sweep(experiment: str, words: Sequence[str]) -> int:
    """Run (or continue) the study; prints the trials' table and the best configuration."""
    from experiments.run import compose_experiment

    args = split_args(words)
    spec = read_sweep(args.file)
    goal = Objective(*_objective_of(experiment, spec, args.overrides))
    metric, direction = goal.metric, goal.direction
    check_keys(spec, lambda extra: compose_experiment(experiment, [*args.overrides, *extra]))
    sweep_dir = _sweep_dir(experiment, args, spec)
    if args.backend == "wandb":
        sweep_dir.mkdir(parents=True, exist_ok=True)
        path = export_wandb(experiment, spec, args, metric, direction, sweep_dir)
        print(f"wandb sweep: {path}\nrun it with: wandb sweep {path} && wandb agent <sweep id>")
        return 0
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(spec, args, sweep_dir, direction)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    target = args.n_trials or spec.n_trials
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    remaining = max(0, target - len(study.get_trials(states=finished)))
    print(
        f"sweep {study.study_name}: {direction} {metric}; {remaining} of {target} trials to run "
        f"(folder {sweep_dir})"
    )
    if remaining:
        study.optimize(
            lambda trial: _run_trial(trial, experiment, spec, args, goal, sweep_dir),
            n_trials=remaining,
            callbacks=[optuna.study.MaxTrialsCallback(target, states=finished)],
            catch=(),
        )
    plot = _write_outputs(study, metric, sweep_dir)
    if plot is not None:
        print(f"study plot: {plot}")
    print(f"sweep folder: {sweep_dir}")
    return 0
