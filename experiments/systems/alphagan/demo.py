"""alphaGAN's part of ``make demo`` (generated data, CPU, a couple of minutes):

1. generate the CIFAR-10-format synthetic images (``data/synthetic-cifar10``, if missing) and run
   the ``alphagan_search_synthetic`` search on them: weight phase, worst-case copies, α steps on
   the duality gap, every epoch;
2. retrain the derived genotype (``alphagan_train_synthetic``) and draw its samples beside the
   untrained generator's, with the stand-in FID of each (``demo_retrain.py``);
3. report the derived genotype, the last sample grids (continuous supernet and argmax path) and
   whether G's samples improved: the stand-in feature distance (random conv features, not FID)
   between 256 samples and the held-out images, for the weights the search started from and
   for the final ones.

    python -m experiments demo alphagan [key=value ...]   # overrides go to the search
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from experiments.checkpoints import load_run
from experiments.registry import DemoResult
from experiments.run import train
from experiments.systems.alphagan.search import build
from lightning_modules.alphagan.feature_distance import GeneratorDistance
from search_spaces.gan import Genotype

EXPERIMENT = "alphagan_search_synthetic"


def sample_distances(ckpt: Path, num_samples: int = 256) -> tuple[float, float]:
    """The feature distance of the search's starting G and of its final G (same z for both)."""
    run = load_run(ckpt)
    start, _ = build(run.cfg, None)  # same seed: the weights the search started from
    dm = run.datamodule
    dm.setup("fit")
    out, distance = [], GeneratorDistance()  # the stand-in extractor: not comparable to FID
    for module in (start, run.module):
        g = torch.Generator().manual_seed(0)
        dim = module.model_cfg.latent_dim
        out.append(
            float(
                distance(
                    module.generator,
                    dm.test_dataloader(),
                    dm.denormalize,
                    lambda n, g=g, d=dim: torch.randn(n, d, generator=g),
                    num_samples,
                )
            )
        )
    return out[0], out[1]


def _short(genotype: Genotype) -> str:
    cells = [
        f"c{c}: " + "/".join(genotype.normal(c)) + " up " + "/".join(genotype.up(c))
        for c in (1, 2, 3)
    ]
    return (
        "; ".join(cells) + f"; skips {'/'.join(genotype.skips(2))} | {'/'.join(genotype.skips(3))}"
    )


def demo(overrides: list[str]) -> DemoResult:
    start = time.perf_counter()
    result = train(EXPERIMENT, overrides)
    run_dir = Path(result.run_dir)
    genotype = Genotype.load(run_dir / "genotype.yaml")
    before, after = sample_distances(run_dir / "checkpoints" / "last.ckpt")
    fit = result.metrics.get("fit", {})
    rows = [
        (
            "alphaGAN search, generated CIFAR-10 format",
            f"{int(fit.get('search/arch_step', 0))} α steps, "
            f"duality gap {fit.get('search/duality_gap', float('nan')):.3f}",
        ),
        (
            "G samples vs held-out images (feature distance, not FID)",
            f"{before:.3f} at start -> {after:.3f} after the search "
            f"({'better' if after < before else 'NOT better'})",
        ),
        ("derived genotype", _short(genotype)),
    ]
    grids = sorted((run_dir / "samples").glob("*.png"))
    outputs = [
        ("search run", str(run_dir)),
        ("derived genotype", f"{run_dir / 'genotype.yaml'} (+ genotype.png)"),
        ("α per edge over time", str(run_dir / "search" / "alpha_history.csv")),
    ]
    outputs += [("last sample grid", str(p)) for p in grids[-2:]]
    from experiments.systems.alphagan.demo_retrain import retrain_part

    more_rows, more_outputs = retrain_part(run_dir / "genotype.yaml", overrides)
    return DemoResult(
        "alphagan", rows + more_rows, outputs + more_outputs, time.perf_counter() - start
    )
