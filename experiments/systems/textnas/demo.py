"""TextNAS's part of ``make demo`` (on embedded, generated data, on CPU, in minutes):

1. generate the SST-2-format synthetic data set and retrain the paper's released architecture
   (24 layers, C=32) on it (2 epochs, as every retrain of the demo);
2. search a 10-layer TextNAS space on it with ENAS (weight sharing + controller), derive the
   best architecture, retrain it, and retrain a random architecture of the same space;
3. report the three validation accuracies side by side, with the majority class, for the
   demo's closing table (``experiments/demo.py``).

    python -m experiments demo textnas [key=value ...]   # overrides go to every run
"""

from __future__ import annotations

import collections
import time
from pathlib import Path

import torch

from experiments.registry import DemoResult
from experiments.run import RunResult, train
from search_spaces.text import Architecture, RandomStrategy

DATA_ROOT = Path("data/synthetic-sst")
# The demo's retrains run 2 epochs of the preset's cosine schedule (the preset's 3 add ~0.03-0.04
# val/acc for half as much time again); the user's own trainer.max_epochs=... still wins.
RETRAIN = ["trainer.max_epochs=2"]


def _majority_accuracy(dev_tsv: Path) -> float:
    labels = [line.rstrip("\n").split("\t")[-1] for line in dev_tsv.read_text().splitlines()[1:]]
    counts = collections.Counter(labels)
    return max(counts.values()) / sum(counts.values())


def _retrain(overrides: list[str]) -> tuple[RunResult, float]:
    """Retrain on the synthetic data: the run and its best checkpoint's val/acc (the score the
    checkpoint callback recorded; ``python -m experiments eval ckpt=...`` reproduces it)."""
    result = train("textnas_train_synthetic", [*RETRAIN, *overrides])
    fit = result.metrics.get("fit", {})
    return result, float(fit.get("best_model_score", fit.get("val/acc", float("nan"))))


def _wandb_run(run_dir: Path) -> str | None:
    runs = sorted((run_dir / "wandb").glob("offline-run-*")) if (run_dir / "wandb").exists() else []
    return str(runs[-1]) if runs else None


def demo(overrides: list[str]) -> DemoResult:
    """Retrain the released architecture, search, retrain the derived and a random one."""
    start = time.perf_counter()
    released, released_acc = _retrain(overrides)

    search = train("textnas_search_synthetic", overrides)
    search_dir = Path(search.run_dir)
    derived_file = search_dir / "architecture.yaml"
    derived, derived_acc = _retrain([*overrides, f"model.architecture={derived_file}"])

    derived_arch = Architecture.load(derived_file)
    random_file = search_dir / "random_architecture.yaml"
    random_space = RandomStrategy(derived_arch.num_layers, derived_arch.k)
    random_space.sample(torch.Generator().manual_seed(0)).save(random_file)
    random_run, random_acc = _retrain([*overrides, f"model.architecture={random_file}"])

    n = derived_arch.num_layers
    rows = []
    if (DATA_ROOT / "dev.tsv").exists():
        rows.append(
            (
                "majority class (generated SST-2)",
                f"val/acc {_majority_accuracy(DATA_ROOT / 'dev.tsv'):.3f}",
            )
        )
    rows += [
        ("released architecture, 24 layers", f"val/acc {released_acc:.3f}"),
        (f"ENAS-derived architecture, {n} layers", f"val/acc {derived_acc:.3f}"),
        (f"random architecture, {n} layers", f"val/acc {random_acc:.3f}"),
    ]
    outputs = [
        ("released retrain", str(released.run_dir)),
        ("search run (search/*.png per epoch)", str(search_dir)),
        ("derived architecture", f"{derived_file} (+ architecture.png, candidates.yaml)"),
        ("derived retrain", str(derived.run_dir)),
        ("random retrain", str(random_run.run_dir)),
    ]
    for label, run_dir in (
        ("wandb (offline), released", released.run_dir),
        ("wandb (offline), search", search_dir),
    ):
        if _wandb_run(Path(run_dir)):
            outputs.append((label, str(_wandb_run(Path(run_dir)))))
    return DemoResult("textnas", rows, outputs, time.perf_counter() - start)
