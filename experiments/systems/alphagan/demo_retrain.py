"""The retraining half of alphaGAN's ``make demo`` part.

Retrains the genotype the demo search derived (``alphagan_train_synthetic``: the generated
CIFAR-10-format images, width-16 networks, a few hundred D steps), then draws the EMA
generator's samples beside those of the same generator untrained (same seed, same z), each
titled with its stand-in FID against the training images (random conv features: not comparable
to published FID).
"""

from __future__ import annotations

from pathlib import Path

import torch

from experiments.checkpoints import load_run
from experiments.run import train
from experiments.systems.alphagan.train import build
from lightning_modules.alphagan.plots import sample_grid
from lightning_modules.alphagan.retrain import chunk_noise
from lightning_modules.alphagan.scoring import (
    FrechetDistance,
    build_extractor,
    real_statistics,
    to_uint8,
)
from lightning_modules.figures import save_figure

EXPERIMENT = "alphagan_train_synthetic"
LABEL = "stand-in, not comparable to published FID"


@torch.no_grad()
def standin_fids(ckpt: Path, num_samples: int = 512) -> tuple[float, float, dict]:
    """Stand-in FID of the untrained and of the retrained (EMA) generator, and their grids."""
    run = load_run(ckpt)
    untrained, _ = build(run.cfg, None)  # same seed: the weights the retraining started from
    dm = run.datamodule
    extractor = build_extractor("standin")
    batches, _, _ = dm.real_images("train")
    mu, sigma = real_statistics(extractor, batches)
    dim = run.module.model_cfg.latent_dim
    fids, grids = [], {}
    for name, module in (("untrained", untrained), ("retrained", run.module)):
        g = module.ema_generator().eval()
        fid = FrechetDistance(extractor.feature_dim, mu, sigma)
        for i in range(0, num_samples, 128):
            fid.update(extractor(to_uint8(g(chunk_noise(0, i, 128, dim))))[0])
        fids.append(float(fid.compute()))
        grids[name] = sample_grid((g(module.fixed_z[:32]) + 1) / 2)
    return fids[0], fids[1], grids


def side_by_side(grids: dict, fids: tuple[float, float], path: Path) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.4))
    for ax, (name, grid), fid in zip(fig.subplots(1, 2), grids.items(), fids, strict=True):
        ax.imshow(grid.permute(1, 2, 0).numpy())
        ax.set_title(f"{name} G: FID {fid:.3f}\n({LABEL})", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)


def retrain_part(genotype: Path, overrides: list[str]) -> tuple[list, list]:
    """``(rows, outputs)`` for the demo's closing table."""
    result = train(EXPERIMENT, [f"model.genotype={genotype}", *overrides])
    run_dir = Path(result.run_dir)
    before, after, grids = standin_fids(run_dir / "checkpoints" / "last.ckpt")
    picture = side_by_side(grids, (before, after), run_dir / "untrained_vs_retrained.png")
    fit = result.metrics.get("fit", {})
    rows = [
        (
            "retrain of the derived genotype (EMA G)",
            f"{int(fit.get('train/g_iter', 0))} G iterations; FID {before:.3f} untrained -> "
            f"{after:.3f} retrained ({LABEL})",
        )
    ]
    outputs = [("retrain run", str(run_dir)), ("untrained vs retrained samples", str(picture))]
    return rows, outputs
