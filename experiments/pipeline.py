"""``python -m experiments pipeline NAME [key=value ...]``: a paper's stages, one command.

A pipeline is a YAML file in ``experiments/pipelines/`` (or a ``pipelines/`` folder beside a
``SUITE_CONFIG_PATH`` entry)::

    description: TextNAS on SST-2: search -> derive -> retrain -> eval
    stages:
      - {name: search, command: train, experiment: textnas_search_sst2, job_type: search}
      - {name: derive, command: derive, experiment: textnas_search_sst2,
         args: ["ckpt={search.last}"]}
      - {name: retrain, command: train, experiment: textnas_train_sst2,
         args: ["model.architecture={derive.run}/architecture.yaml"]}
      - {name: eval, command: eval, args: ["ckpt={retrain.best}"]}

Each stage runs as its own ``python -m experiments COMMAND ...`` process (so DDP launchers and
memory start clean) with ``output_dir=<pipeline folder>/<stage>``: its run folder is the one it
creates there. ``{stage.run}`` is that folder, ``{stage.last}`` its ``checkpoints/last.ckpt``,
``{stage.best}`` its best checkpoint (``metrics.json``), falling back to ``last``; ``{here}``
is the running stage's own folder (for commands that take an output folder, like ``render``).

The pipeline folder (default ``<output_dir>/pipelines/<NAME>``, or ``pipeline.dir=PATH``) holds
``manifest.yaml``: every stage's command line, run folder, state and time. Running the command
again continues from the first unfinished stage. Every stage logs to one wandb group (the
pipeline's folder name) with its stage as ``job_type``.

Overrides: ``key=value`` goes to every stage; ``stages.<stage>.key=value`` to one stage.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from experiments.config import ConfigError, load_yaml, parse_override
from experiments.registry import config_dirs

PIPELINES_DIR = Path(__file__).parent / "pipelines"
STAGE_KEYS = ("name", "command", "experiment", "args", "job_type")
COMMANDS_WITHOUT_EXPERIMENT = ("eval",)
_PLACEHOLDER = re.compile(r"\{(\w+)\.(run|last|best)\}")


@dataclass(frozen=True)
class Stage:
    name: str
    command: str
    experiment: str | None
    args: tuple[str, ...] = ()
    job_type: str | None = None


@dataclass(frozen=True)
class Pipeline:
    name: str
    path: Path
    description: str
    stages: tuple[Stage, ...]


def pipeline_files() -> dict[str, Path]:
    """``name -> file`` for every pipeline; SUITE_CONFIG_PATH's ``pipelines/`` folders first."""
    found: dict[str, Path] = {}
    for folder in [*(d.parent / "pipelines" for d in config_dirs()[:-1]), PIPELINES_DIR]:
        if folder.is_dir():
            for path in sorted(folder.glob("*.yaml")):
                found.setdefault(path.stem, path)
    return found


def _stage(path: Path, i: int, data: Any, earlier: list[str]) -> Stage:
    where = f"{path}: stages[{i}]"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a stage is a mapping with name, command, experiment, args")
    for key in data:
        if key not in STAGE_KEYS:
            match = difflib.get_close_matches(str(key), STAGE_KEYS, n=1)
            raise ConfigError(
                f"{where}: unknown key '{key}'"
                + (f" (did you mean '{match[0]}'?)" if match else "")
            )
    name, command = data.get("name"), data.get("command")
    if not name or not command:
        raise ConfigError(f"{where}: needs 'name' and 'command'")
    if name in earlier:
        raise ConfigError(f"{where}: stage name '{name}' is used twice")
    experiment = data.get("experiment")
    if experiment is None and command not in COMMANDS_WITHOUT_EXPERIMENT:
        raise ConfigError(f"{where}: command '{command}' needs an 'experiment'")
    args = tuple(str(a) for a in data.get("args") or ())
    for arg in args:
        for ref, _ in _PLACEHOLDER.findall(arg):
            if ref not in earlier:
                raise ConfigError(f"{where}: '{arg}' refers to '{ref}', not an earlier stage")
    return Stage(str(name), str(command), experiment, args, data.get("job_type"))


def load_pipeline(name: str) -> Pipeline:
    files = pipeline_files()
    if name not in files:
        match = difflib.get_close_matches(name, list(files), n=1)
        hint = f"did you mean '{match[0]}'? " if match else ""
        raise ConfigError(f"unknown pipeline '{name}'; {hint}pipelines: {', '.join(files)}")
    path = files[name]
    data = load_yaml(path)
    stages: list[Stage] = []
    for i, item in enumerate(data.get("stages") or []):
        stages.append(_stage(path, i, item, [s.name for s in stages]))
    if not stages:
        raise ConfigError(f"{path}: no stages")
    return Pipeline(name, path, str(data.get("description", "")), tuple(stages))


def list_pipelines() -> list[Pipeline]:
    return [load_pipeline(name) for name in pipeline_files()]


# ------------------------------------------------------------------------------------------
# Running
# ------------------------------------------------------------------------------------------


@dataclass
class Manifest:
    """``manifest.yaml``: the pipeline's stages as they ran."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, path: Path, pipeline: Pipeline) -> Manifest:
        if path.is_file():
            data = yaml.safe_load(path.read_text()) or {}
            if data.get("pipeline") != pipeline.name:
                raise ConfigError(
                    f"{path}: belongs to pipeline '{data.get('pipeline')}', not "
                    f"'{pipeline.name}'; choose another pipeline.dir"
                )
            return cls(path, data)
        group = f"{pipeline.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        return cls(path, {"pipeline": pipeline.name, "group": group, "stages": {}})

    def stage(self, name: str) -> dict[str, Any]:
        return self.data["stages"].setdefault(name, {"state": "pending"})

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(self.data, sort_keys=False))
        os.replace(tmp, self.path)


def _run_folder(stage_dir: Path, started: float) -> Path:
    """The run folder a stage created under its own output folder (a run folder with its
    config.yaml, else the folder a command like ``render`` wrote there)."""
    made = [p for p in stage_dir.glob("*/*") if p.is_dir() and (p / "config.yaml").is_file()]
    made = made or [p for p in stage_dir.glob("*") if p.is_dir()]
    made = [p for p in made if p.stat().st_mtime >= started - 1] or made
    if not made:
        raise ConfigError(f"stage wrote no run folder under {stage_dir}")
    return max(made, key=lambda p: p.stat().st_mtime)


def _resolve(arg: str, manifest: Manifest) -> str:
    def value(match: re.Match) -> str:
        ref, what = match.group(1), match.group(2)
        run = Path(manifest.stage(ref)["run"])
        if what == "run":
            return str(run)
        last = run / "checkpoints" / "last.ckpt"
        if what == "best":
            metrics = run / "metrics.json"
            if metrics.is_file():
                best = json.loads(metrics.read_text()).get("fit", {}).get("best_model_path")
                if best and Path(best).is_file():
                    return str(best)
        if not last.is_file():
            raise ConfigError(f"stage '{ref}' left no checkpoint: {last} is missing")
        return str(last)

    return _PLACEHOLDER.sub(value, arg)


def _split_overrides(
    pipeline: Pipeline, words: Sequence[str]
) -> tuple[list[str], dict, Path | None]:
    shared: list[str] = []
    per_stage: dict[str, list[str]] = {s.name: [] for s in pipeline.stages}
    folder = None
    for word in words:
        key, _, rest = word.partition("=")
        if key == "pipeline.dir":
            folder = Path(str(parse_override(word)[1]))
        elif key.startswith("stages."):
            stage, _, sub = key[len("stages.") :].partition(".")
            if stage not in per_stage:
                raise ConfigError(
                    f"{key}: pipeline '{pipeline.name}' has no stage '{stage}'; stages: "
                    + ", ".join(per_stage)
                )
            per_stage[stage].append(f"{sub}={rest}")
        else:
            shared.append(word)
    return shared, per_stage, folder


def run_pipeline(name: str, words: Sequence[str], output_dir: str = "outputs") -> int:
    pipeline = load_pipeline(name)
    shared, per_stage, folder = _split_overrides(pipeline, words)
    for word in shared:
        if word.partition("=")[0] == "output_dir":
            output_dir = str(parse_override(word)[1])
    shared = [w for w in shared if w.partition("=")[0] != "output_dir"]
    folder = (folder or Path(output_dir) / "pipelines" / name).resolve()
    manifest = Manifest.open(folder / "manifest.yaml", pipeline)
    group = manifest.data["group"]
    for stage in pipeline.stages:
        record = manifest.stage(stage.name)
        if record["state"] == "done":
            print(f"[{pipeline.name}] {stage.name}: done ({record['run']})")
            continue
        stage_dir = folder / stage.name
        args = [_resolve(a, manifest).replace("{here}", str(stage_dir)) for a in stage.args]
        words = [stage.command, *([stage.experiment] if stage.experiment else []), *args]
        words += [*shared, *per_stage[stage.name], f"output_dir={stage_dir}"]
        words += [
            f"logger.wandb.group={group}",
            f"logger.wandb.job_type={stage.job_type or stage.name}",
        ]
        record.update(state="running", command="python -m experiments " + " ".join(words))
        manifest.save()
        print(f"[{pipeline.name}] {stage.name}: {record['command']}", flush=True)
        started = time.time()
        done = subprocess.run([sys.executable, "-m", "experiments", *words], check=False)
        record["seconds"] = round(time.time() - started, 1)
        if done.returncode != 0:
            record["state"] = "failed"
            manifest.save()
            raise ConfigError(
                f"pipeline '{name}' stopped: stage '{stage.name}' exited with code "
                f"{done.returncode} (its error is above); run the same command again to retry "
                f"from this stage (manifest: {manifest.path})"
            )
        record.update(state="done", run=str(_run_folder(stage_dir, started)))
        manifest.save()
    print(f"[{pipeline.name}] all {len(pipeline.stages)} stages done; manifest: {manifest.path}")
    for stage in pipeline.stages:
        print(f"  {stage.name:<10} {manifest.stage(stage.name)['run']}")
    return 0


def pipeline_command(words: Sequence[str]) -> int:
    """``pipeline list`` or ``pipeline NAME [key=value ...]``."""
    names = [w for w in words if "=" not in w]
    overrides = [w for w in words if "=" in w]
    if names == ["list"] and not overrides:
        for p in list_pipelines():
            stages = " -> ".join(s.name for s in p.stages)
            print(f"{p.name:<24} {stages:<40} {p.description}")
        return 0
    if len(names) != 1:
        raise ConfigError(
            "usage: python -m experiments pipeline NAME [key=value ...] (or: pipeline list); "
            f"pipelines: {', '.join(pipeline_files())}"
        )
    return run_pipeline(names[0], overrides)
