"""Command line: ``python -m experiments COMMAND [EXPERIMENT] [key=value ...]``.

User errors (bad config, missing data or files) print one line ``error: ...`` on stderr and
exit with code 2; ``SUITE_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

USAGE = (
    "usage: python -m experiments {demo,list,show,train,eval,data,<command>} [EXPERIMENT] "
    "[key=value ...]"
)
HELP = f"""{USAGE}

commands:
  demo  [SYSTEM ...] [k=v ...]  each system's demo part on generated data (CPU, minutes);
                                all systems without a name (make demo SYSTEMS=textnas)
  list                          experiments, their systems and descriptions
  show  EXPERIMENT [k=v ...]    the resolved config as YAML
  train EXPERIMENT [k=v ...]    train; resume=last (or resume=PATH) continues a run
  eval  [EXPERIMENT] ckpt=PATH [k=v ...]
                                validate (and test) a checkpoint; config comes from it
  data  EXPERIMENT [k=v ...]    the data as training reads it: split sizes and label counts,
                                a preview folder, and one JSON line last on stdout
  sweep EXPERIMENT sweep=FILE [n_trials=N] [seeds=K] [backend=optuna|wandb]
        [sweep.storage=URL] [k=v ...]
                                an Optuna study over config keys (each trial a train run)
  pipeline NAME|list [k=v ...] [stages.STAGE.k=v ...]
                                a paper's stages in order (search, derive, retrain, eval;
                                train, eval, render); again: continues where it stopped
  launch slurm EXPERIMENT [nodes=N gpus_per_node=G slurm.partition=P ...] [k=v ...]
                                submit train through submitit; a requeued job continues
  dashboard EXPERIMENT [logger.wandb.entity=E logger.wandb.project=P] [dry_run=true]
                                save the system's wandb workspace (dry_run: print it)
  <command> EXPERIMENT [k=v ...] [args]
                                a system's own command (e.g. search, derive)

overrides: key=value with YAML values, e.g. trainer.max_epochs=3 trainer.devices=[0,1]
           logger.wandb.mode=disabled resume=last; preset=trainer/cpu,trainer/ddp merges presets
environment: SUITE_CONFIG_PATH extra config dirs; WANDB_MODE; SUITE_DEBUG=1 for tracebacks;
             SUITE_CPU_KERNELS=0 stock PyTorch ops instead of the CPU fast paths (or the key
             cpu_kernels=false); SUITE_GLIBC_TUNING=1 keeps freed memory in CPU runs (glibc
             mallopt: fewer page faults per step, resident memory stays at its peak; render
             does so unless SUITE_GLIBC_TUNING=0)
"""

_OVERRIDE = re.compile(r"^[A-Za-z_][\w\-.]*=")


class UsageError(Exception):
    """Wrong command-line shape."""


def _split(words: Sequence[str]) -> tuple[list[str], list[str]]:
    overrides = [w for w in words if _OVERRIDE.match(w)]
    return overrides, [w for w in words if not _OVERRIDE.match(w)]


def _experiment(words: list[str], command: str) -> tuple[str, list[str]]:
    overrides, rest = _split(words)
    if not rest:
        raise UsageError(f"'{command}' needs an EXPERIMENT (see `python -m experiments list`)")
    return rest[0], overrides + rest[1:]


def _list() -> int:
    from experiments.registry import list_experiments

    infos = list_experiments()
    if not infos:
        print("no experiments found")
        return 0
    width = max(len(i.name) for i in infos)
    swidth = max(len(i.system) for i in infos)
    for info in infos:
        print(f"{info.name:<{width}}  {info.system:<{swidth}}  {info.description}".rstrip())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch one command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        raise UsageError("missing COMMAND (try --help)")
    if argv[0] in ("-h", "--help", "help"):
        print(HELP)
        return 0
    command, words = argv[0], argv[1:]
    if any(w in ("-h", "--help") for w in words):
        print(HELP)
        return 0
    if command not in ("list", "show"):
        from experiments.allocator import keep_freed_memory

        # fewer page faults per CPU step (allocator.py): opt-in, on by default for render
        keep_freed_memory(default=command == "render")
    if command == "demo":
        from experiments.demo import main as demo

        overrides, systems = _split(words)
        return demo(systems, overrides)
    if command == "list":
        if words:
            raise UsageError("'list' takes no arguments")
        return _list()
    if command == "show":
        from experiments.run import show

        name, overrides = _experiment(words, command)
        _no_extra_args(overrides)
        print(show(name, overrides), end="")
        return 0
    if command == "train":
        from experiments.run import train

        name, overrides = _experiment(words, command)
        _no_extra_args(overrides)
        result = train(name, overrides)
        _report(result.run_dir)
        return 0
    if command == "eval":
        from experiments.run import evaluate

        overrides, rest = _split(words)
        if len(rest) > 1:
            raise UsageError(f"'eval' takes at most one EXPERIMENT, got: {' '.join(rest)}")
        result = evaluate(rest[0] if rest else None, overrides)
        _report(result.run_dir)
        return 0
    if command == "dashboard":
        from experiments.dashboard import dashboard

        name, words = _experiment(words, command)
        return dashboard(name, words)
    if command == "launch":
        from experiments.slurm import launch

        overrides, rest = _split(words)
        if len(rest) < 2:
            raise UsageError("usage: launch slurm EXPERIMENT [nodes=N gpus_per_node=G] [k=v ...]")
        return launch(rest[0], rest[1], [*overrides, *rest[2:]])
    if command == "pipeline":
        from experiments.pipeline import pipeline_command

        return pipeline_command(words)
    if command == "sweep":
        from experiments.sweep import sweep

        name, words = _experiment(words, command)
        return sweep(name, words)
    if command == "data":
        import json

        from experiments.run import inspect_data

        name, overrides = _experiment(words, command)
        _no_extra_args(overrides)
        summary, out_dir = inspect_data(name, overrides)
        if _is_rank_zero():
            for split, info in summary["splits"].items():
                labels = ", ".join(f"{k} {v}" for k, v in (info.get("labels") or {}).items())
                # sequence data (faces) also reports its frames and seconds per split
                extra = "".join(f"   {info[k]} {k}" for k in ("frames", "seconds") if k in info)
                print(f"{split:<12} {info['size']:>8} examples{extra}   {labels}")
            print(f"preview: {out_dir}")
            print(json.dumps(summary, sort_keys=True))
        return 0
    if command.startswith("-"):
        raise UsageError(f"unknown option '{command}'")
    from experiments.run import run_command

    overrides, rest = _split(words)
    # without an EXPERIMENT, run_command takes it from ckpt=PATH or says it is missing
    return run_command(command, rest[0] if rest else None, overrides, rest[1:])


def _is_rank_zero() -> bool:
    from experiments.trainer import env_rank

    return env_rank() == 0


def _report(run_dir: object) -> None:
    if _is_rank_zero():
        print(f"run folder: {run_dir}")


def _no_extra_args(words: list[str]) -> None:
    extra = [w for w in words if not _OVERRIDE.match(w)]
    if extra:
        raise UsageError(
            f"unexpected argument(s): {' '.join(extra)} (overrides look like key=value)"
        )


def _message(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"{exc.strerror or 'file not found'}: {exc.filename}"
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def _show_data_logs() -> None:
    """Print the datamodules' INFO lines (sentence and label counts at setup)."""
    import logging

    class _Stderr(logging.StreamHandler):  # whatever sys.stderr is now (tests redirect it)
        @property
        def stream(self):  # type: ignore[override]
            return sys.stderr

        @stream.setter
        def stream(self, value: object) -> None:
            pass

    handler = _Stderr()
    handler.setFormatter(logging.Formatter("[%(name)s] %(message)s"))
    logger = logging.getLogger("datamodules")
    logger.setLevel(logging.INFO)
    if not logger.handlers:
        logger.addHandler(handler)


SUITE_PACKAGES = ("experiments", "datamodules", "lightning_modules", "search_spaces", "benchmarks")


def _suite_warning_format(default):
    """``warnings.formatwarning`` that prints the suite's own warnings (a sequence cut to its
    audio, validation skipped, ...) as one ``warning: ...`` line, as errors are printed; the
    libraries' warnings keep Python's format, with the file and line that raised them."""
    root = Path(__file__).resolve().parent.parent

    def format_warning(message, category, filename, lineno, line=None):
        try:
            parts = Path(filename).resolve().relative_to(root).parts
        except ValueError:
            parts = ()
        if parts and parts[0] in SUITE_PACKAGES and issubclass(category, UserWarning):
            return f"warning: {' '.join(str(message).split())}\n"
        return default(message, category, filename, lineno, line)

    format_warning.suite = True
    return format_warning


def _show_suite_warnings() -> None:
    import warnings

    if not getattr(warnings.formatwarning, "suite", False):
        warnings.formatwarning = _suite_warning_format(warnings.formatwarning)


def _close_process_group() -> None:
    """Destroy the process group a DDP run opened (Lightning does so at exit only for NCCL).

    A gloo group still alive when the interpreter exits can abort the process after a
    successful run ("terminate called without an active exception", exit code 134).
    """
    torch = sys.modules.get("torch")
    if torch is None or not torch.distributed.is_available():
        return
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def cli(argv: Sequence[str] | None = None) -> int:
    """``main`` with user errors turned into one ``error:`` line and exit code 2."""
    try:
        return _cli(argv)
    finally:
        _close_process_group()


def _cli(argv: Sequence[str] | None = None) -> int:
    debug = os.environ.get("SUITE_DEBUG", "") not in ("", "0")
    _show_data_logs()
    _show_suite_warnings()
    try:
        return main(argv)
    except UsageError as e:
        if debug:
            raise
        print(USAGE, file=sys.stderr)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        from experiments.config import is_user_error

        if debug or not is_user_error(e):
            raise
        print(f"error: {_message(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli())
