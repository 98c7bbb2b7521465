"""Cluster jobs: a run folder keyed by the job, ``resume=auto``, and ``launch slurm``.

Under SLURM (or a job submitit started) a training run lives in
``<output_dir>/<experiment>/slurm-<job id>/``, the same folder whenever the job is requeued or
restarted, and ``resume=auto`` (the default there) continues from that folder's newest
checkpoint: ``checkpoints/*.ckpt`` or Lightning's own requeue checkpoint ``hpc_ckpt_<n>.ckpt``;
with none it starts fresh in the folder.

``python -m experiments launch slurm EXPERIMENT nodes=2 gpus_per_node=8 [slurm.partition=...]
[key=value ...]`` submits ``train`` through submitit with one task per GPU, so Lightning's
SLURM environment sees the world size, rank and master address; a job that reaches its time
limit or is preempted is requeued by submitit and continues in its folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from experiments.config import ConfigError, parse_override

#: set by the submitted job (submitit's job id); else SLURM's own variables
JOB_ENV = "SUITE_JOB_ID"


def job_key() -> str | None:
    """The job's id, stable across requeues; None outside a cluster job."""
    if os.environ.get(JOB_ENV):
        return os.environ[JOB_ENV]
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID") or None


def job_run_dir(output_dir: str, experiment: str) -> Path | None:
    """``<output_dir>/<experiment>/slurm-<job id>`` inside a job, else None."""
    key = job_key()
    if key is None:
        return None
    return Path(output_dir).resolve() / experiment / f"slurm-{key}"


def newest_checkpoint(run_dir: Path) -> Path | None:
    """The newest of ``run_dir``'s checkpoints and Lightning's requeue checkpoints."""
    found = [*run_dir.glob("checkpoints/*.ckpt"), *run_dir.glob("hpc_ckpt_*.ckpt")]
    found = [p for p in found if p.is_file() and p.stat().st_size > 0]
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


# ------------------------------------------------------------------------------------------
# launch slurm
# ------------------------------------------------------------------------------------------


@dataclass
class SlurmOptions:
    """``launch slurm`` keys (``nodes=``, ``gpus_per_node=``, ``slurm.<field>=``)."""

    nodes: int = 1
    gpus_per_node: int = 1
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_min: int = 24 * 60
    cpus_per_task: int = 8
    mem_gb: int | None = None
    constraint: str | None = None
    executor: str = "slurm"  # slurm | local (submitit's local executor: tests, a workstation)


def _options(words: Sequence[str]) -> tuple[SlurmOptions, list[str]]:
    import difflib

    names = [f.name for f in fields(SlurmOptions)]
    opts, rest = SlurmOptions(), []
    for word in words:
        key = word.partition("=")[0]
        field = {"nodes": "nodes", "gpus_per_node": "gpus_per_node"}.get(key)
        if key.startswith("slurm."):
            field = key[len("slurm.") :]
            if field not in names:
                match = difflib.get_close_matches(field, names, n=1)
                hint = f" (did you mean 'slurm.{match[0]}'?)" if match else ""
                raise ConfigError(f"unknown launch key '{key}'{hint}")
        if field is None:
            rest.append(word)
            continue
        value = parse_override(word)[1]
        default = getattr(SlurmOptions, field, None)
        if isinstance(default, int) and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"{key}: expected a positive integer, got {value!r}")
        setattr(opts, field, value)
    if opts.executor not in ("slurm", "local"):
        raise ConfigError(f"slurm.executor: '{opts.executor}' is not slurm or local")
    return opts, rest


class TrainJob:
    """The callable submitit runs on every task: ``train`` with the job's overrides; on a time
    limit or preemption submitit calls :meth:`checkpoint` and requeues the same job, which
    continues in its folder (``resume=auto``)."""

    def __init__(self, experiment: str, overrides: Sequence[str]) -> None:
        self.experiment, self.overrides = experiment, list(overrides)

    def __call__(self) -> str:
        import submitit

        from experiments.run import train

        os.environ.setdefault(JOB_ENV, str(submitit.JobEnvironment().job_id).split("_")[0])
        return str(train(self.experiment, self.overrides).run_dir)

    def checkpoint(self) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(TrainJob(self.experiment, self.overrides))


def launch(target: str, experiment: str, words: Sequence[str]) -> int:
    """``launch slurm EXPERIMENT [nodes=N gpus_per_node=G slurm.*=...] [key=value ...]``."""
    if target != "slurm":
        raise ConfigError(f"launch: unknown target '{target}'; use: launch slurm EXPERIMENT ...")
    try:
        import submitit
    except ImportError:
        raise ConfigError(
            "launch slurm needs submitit: pip install 'submitit>=1.5' (make setup installs it)"
        ) from None
    from experiments.run import compose_experiment

    opts, overrides = _options(words)
    local = opts.executor == "local"
    devices = [
        f"trainer.num_nodes={opts.nodes}",
        f"trainer.devices={opts.gpus_per_node}",
    ]
    if not local:
        devices.append("trainer.accelerator=gpu")
    overrides = [*overrides, *devices]
    spec, cfg = compose_experiment(experiment, overrides, command="train")
    if spec.validate is not None:
        spec.validate(cfg)
    logs = Path(cfg.output_dir).resolve() / experiment / "slurm-logs"
    executor = submitit.AutoExecutor(folder=str(logs / "%j"), cluster="local" if local else None)
    if not local and executor.cluster != "slurm":
        raise ConfigError(
            "launch slurm: no SLURM here (sbatch not found); run it on the cluster's login "
            "node, or slurm.executor=local to try the job on this machine"
        )
    params: dict[str, Any] = {
        "nodes": opts.nodes,
        "tasks_per_node": opts.gpus_per_node,
        "timeout_min": opts.time_min,
        "name": f"{experiment}",
    }
    if not local:
        params.update(gpus_per_node=opts.gpus_per_node, cpus_per_task=opts.cpus_per_task)
        extra = {
            "slurm_partition": opts.partition,
            "slurm_account": opts.account,
            "slurm_qos": opts.qos,
            "slurm_constraint": opts.constraint,
            "mem_gb": opts.mem_gb,
        }
        params.update({k: v for k, v in extra.items() if v is not None})
    executor.update_parameters(**params)
    job = executor.submit(TrainJob(experiment, overrides))
    print(
        f"submitted job {job.job_id}: {experiment} on {opts.nodes} node(s) x "
        f"{opts.gpus_per_node} task(s); logs: {logs / str(job.job_id)}"
    )  # noqa: E501
    if local:
        print(f"run folder: {job.result()}")
    return 0
