"""A short bf16 training bench of every system on one GPU (``make gpu-check`` runs it after the
GPU tests): each system's synthetic experiment, ``trainer.precision=bf16-mixed``, a few warm-up
steps, then steps/s, samples/s and peak GPU memory, one ``benchmarks/results/gpu-<system>.json``
per system.

    python -m benchmarks.gpu                       # every system, CUDA, bf16-mixed
    python -m benchmarks.gpu --device cpu --steps 3 --experiments textnas_train_synthetic

Without a CUDA device (and no ``--device cpu``) it says so and exits 0: nothing to measure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from benchmarks.machine import describe_machine

EXPERIMENTS = {
    "textnas": ("textnas_train_synthetic", ["trainer.limit_val_batches=0"]),
    "textnas_search": ("textnas_search_synthetic", ["trainer.limit_val_batches=0"]),
    "alphagan": ("alphagan_search_synthetic", []),
    "alphagan_retrain": ("alphagan_train_synthetic", ["train.eval_every=100000"]),
    "dualtalker": ("dualtalker_synthetic", ["trainer.limit_val_batches=0"]),
}


class StepTimer(L.Callback):
    """Wall time of each training batch (synchronised on CUDA) after ``warmup`` batches."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.times, self.samples = warmup, [], []
        self._start = 0.0

    def _sync(self, trainer: L.Trainer) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._sync(trainer)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._sync(trainer)
        if batch_idx >= self.warmup:
            self.times.append(time.perf_counter() - self._start)
            self.samples.append(_batch_size(batch))


def _batch_size(batch) -> int:
    if isinstance(batch, dict):
        batch = next(iter(batch.values()))
    if isinstance(batch, list | tuple):
        batch = batch[0]
    return int(batch.shape[0]) if hasattr(batch, "shape") else 1


def bench(system: str, device: str, steps: int, warmup: int, out_dir: Path) -> dict:
    from experiments.run import train

    experiment, extra = EXPERIMENTS[system]
    timer = StepTimer(warmup)
    precision = "bf16-mixed" if device == "cuda" else "32-true"
    words = [
        *extra,
        f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}",
        f"trainer.precision={precision}",
        f"trainer.limit_train_batches={steps + warmup}",
        "trainer.max_epochs=1",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false",
        "logger.wandb.mode=disabled",
        "checkpoint.save_top_k=0",
        "checkpoint.save_last=false",
        f"output_dir={out_dir}",
    ]
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    train(experiment, words, extra_callbacks=[timer])
    wall = time.perf_counter() - start
    if not timer.times:
        raise RuntimeError(f"{experiment}: no timed step (the epoch ran fewer than {warmup} steps)")
    step = statistics.median(timer.times)
    return {
        "experiment": experiment,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "precision": precision,
        "timed_steps": len(timer.times),
        "step_s_median": step,
        "steps_per_s": 1.0 / step,
        "samples_per_s": statistics.median(timer.samples) / step,
        "peak_gpu_memory_gb": torch.cuda.max_memory_allocated() / 2**30
        if device == "cuda"
        else None,
        "run_wall_s": wall,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per system")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--systems", nargs="+", default=list(EXPERIMENTS), choices=list(EXPERIMENTS)
    )
    parser.add_argument("--out", default="benchmarks/results", help="folder of gpu-<system>.json")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("benchmarks.gpu: no CUDA device here; nothing measured (--device cpu to try it)")
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as tmp:
        for system in args.systems:
            result = bench(system, args.device, args.steps, args.warmup, Path(tmp))
            result["machine"] = describe_machine()
            path = out / f"gpu-{system}.json"
            path.write_text(json.dumps(result, indent=2) + "\n")
            print(
                f"{system:<15} {result['steps_per_s']:8.2f} steps/s {result['samples_per_s']:9.1f} "
                f"samples/s  peak {result['peak_gpu_memory_gb'] or 0:.2f} GB  -> {path}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
