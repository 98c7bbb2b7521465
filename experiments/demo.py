"""``make demo``: every system's main job on embedded, generated data, on CPU, in minutes.

TextNAS: generate the SST-2-format synthetic data set, retrain the paper's released
architecture (C=32) on it, evaluate the best checkpoint, and print what a person looks at.

    python -m experiments.demo [key=value ...]     # overrides go to the TextNAS run
"""

from __future__ import annotations

import collections
import sys
import time
from pathlib import Path

from experiments.run import evaluate, train


def _majority_accuracy(dev_tsv: Path) -> float:
    labels = [line.rstrip("\n").split("\t")[-1] for line in dev_tsv.read_text().splitlines()[1:]]
    counts = collections.Counter(labels)
    return max(counts.values()) / sum(counts.values())


def textnas(overrides: list[str]) -> dict:
    start = time.perf_counter()
    result = train("textnas_train_synthetic", overrides)
    fit = result.metrics.get("fit", {})
    best = fit.get("best_model_path")
    evaluation = evaluate(None, [f"ckpt={best}", "logger.wandb.mode=disabled",
                                 *[o for o in overrides if o.startswith("output_dir=")]])  # fmt: skip
    val = evaluation.metrics.get("validate", {})
    run_dir = Path(result.run_dir)
    wandb_runs = sorted(str(p) for p in (run_dir / "wandb").glob("offline-run-*")) if (run_dir / "wandb").exists() else []
    data_root = Path("data/synthetic-sst")
    print()
    print("TextNAS: the released architecture (24 layers, C=32) retrained on generated SST-2 data")
    print(f"  run folder        {run_dir}")
    print(f"  architecture      {run_dir / 'architecture.yaml'}")
    print(f"  best checkpoint   {best}")
    if wandb_runs:
        print(f"  wandb (offline)   {wandb_runs[-1]}   (upload: wandb sync {wandb_runs[-1]})")
    print(f"  metrics           {run_dir / 'metrics.json'}")
    if (data_root / "dev.tsv").exists():
        print(f"  majority class    val/acc = {_majority_accuracy(data_root / 'dev.tsv'):.3f}")
    print(f"  released arch     val/acc = {val.get('val/acc', float('nan')):.3f}   (best checkpoint, re-evaluated)")
    print(f"  time              {time.perf_counter() - start:.0f} s")
    return {"run_dir": str(run_dir), "val_acc": val.get("val/acc")}


def main(argv: list[str] | None = None) -> int:
    overrides = list(sys.argv[1:] if argv is None else argv)
    textnas(overrides)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
