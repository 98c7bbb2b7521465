"""``make demo``: every system's main job on embedded, generated data, on CPU, in minutes.

TextNAS:
1. generate the SST-2-format synthetic data set and retrain the paper's released architecture
   (24 layers, C=32) on it;
2. search a 10-layer TextNAS space on it with ENAS (weight sharing + controller), derive the
   best architecture, retrain it, and retrain a random architecture of the same space;
3. print the three validation accuracies side by side, with the majority class.

    python -m experiments demo [key=value ...]     # overrides go to every run (e.g. output_dir)
"""

from __future__ import annotations

import collections
import sys
import time
from pathlib import Path

import torch

from experiments.run import RunResult, evaluate, train
from search_spaces.text import Architecture, RandomStrategy

DATA_ROOT = Path("data/synthetic-sst")


def _majority_accuracy(dev_tsv: Path) -> float:
    labels = [line.rstrip("\n").split("\t")[-1] for line in dev_tsv.read_text().splitlines()[1:]]
    counts = collections.Counter(labels)
    return max(counts.values()) / sum(counts.values())


def _retrain(overrides: list[str]) -> tuple[RunResult, float]:
    """Retrain on the synthetic data, then re-evaluate the best checkpoint: its val/acc."""
    result = train("textnas_train_synthetic", overrides)
    best = result.metrics.get("fit", {}).get("best_model_path")
    evaluation = evaluate(None, [f"ckpt={best}", "logger.wandb.mode=disabled",
                                 *[o for o in overrides if o.startswith("output_dir=")]])  # fmt: skip
    return result, float(evaluation.metrics.get("validate", {}).get("val/acc", float("nan")))


def _wandb_run(run_dir: Path) -> str | None:
    runs = sorted((run_dir / "wandb").glob("offline-run-*")) if (run_dir / "wandb").exists() else []
    return str(runs[-1]) if runs else None


def textnas(overrides: list[str]) -> dict:
    start = time.perf_counter()
    released, released_acc = _retrain(overrides)
    t_released = time.perf_counter() - start

    search = train("textnas_search_synthetic", overrides)
    search_dir = Path(search.run_dir)
    derived_file = search_dir / "architecture.yaml"
    derived, derived_acc = _retrain([*overrides, f"model.architecture={derived_file}"])

    derived_arch = Architecture.load(derived_file)
    random_file = search_dir / "random_architecture.yaml"
    random_space = RandomStrategy(derived_arch.num_layers, derived_arch.k)
    random_space.sample(torch.Generator().manual_seed(0)).save(random_file)
    random_run, random_acc = _retrain([*overrides, f"model.architecture={random_file}"])
    total = time.perf_counter() - start

    run_dir = Path(released.run_dir)
    print()
    print("TextNAS on generated SST-2 data (CPU)")
    print(f"  released run      {run_dir}   ({t_released:.0f} s)")
    if _wandb_run(run_dir):
        print(f"  wandb (offline)   {_wandb_run(run_dir)}")
    print(f"  search run        {search_dir}")
    print(f"  derived arch      {derived_file}  (+ architecture.png, candidates.yaml, search/*.png)")
    print(f"  derived retrain   {derived.run_dir}")
    print(f"  random retrain    {random_run.run_dir}")
    if (DATA_ROOT / "dev.tsv").exists():
        print(f"  majority class                      val/acc = {_majority_accuracy(DATA_ROOT / 'dev.tsv'):.3f}")
    print(f"  released architecture (24 layers)   val/acc = {released_acc:.3f}")
    print(f"  derived architecture ({derived_arch.num_layers} layers)    val/acc = {derived_acc:.3f}")
    print(f"  random architecture ({derived_arch.num_layers} layers)     val/acc = {random_acc:.3f}")
    print(f"  time              {total:.0f} s")
    return {"released": released_acc, "derived": derived_acc, "random": random_acc,
            "run_dir": str(run_dir), "search_dir": str(search_dir)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    overrides = list(sys.argv[1:] if argv is None else argv)
    textnas(overrides)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
