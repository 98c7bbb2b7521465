"""``python -m experiments sample ckpt=PATH n=N out=DIR [seed=S] [batch=B]``: samples of a
retrained alphaGAN generator (its EMA weights, eval mode) as PNGs and one ``samples.npz``
(``arr_0``: uint8 ``(N, H, W, 3)``); ``N <= 64`` also writes ``grid.png``. Bad input (``n`` not
a positive integer, an ``out`` folder that holds files) is one error line, nothing written."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from experiments.checkpoints import load_run
from experiments.config import ConfigError
from lightning_modules.alphagan.retrain import chunk_noise


def _positive_int(key: str, value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1 or str(n) != value.strip():
        raise ConfigError(f"sample: {key} must be a positive integer, got '{value}'")
    return n


def sample_command(cfg: DictConfig, args: list[str]) -> int:
    """``sample ckpt=PATH n=N out=DIR [seed=S] [batch=B]``: N PNGs and one npz from the EMA G."""
    import numpy as np
    from PIL import Image
    from tqdm.auto import tqdm

    from lightning_modules.alphagan.plots import sample_grid
    from lightning_modules.alphagan.scoring import to_uint8

    opts = dict(a.split("=", 1) for a in args if "=" in a)
    extra = sorted(set(opts) - {"n", "out", "seed", "batch"}) + [a for a in args if "=" not in a]
    if extra:
        raise ConfigError(f"sample takes n=, out=, seed=, batch= (and ckpt=); got {extra[0]}")
    if not cfg.ckpt:
        raise ConfigError("sample needs a retrain checkpoint: ckpt=PATH")
    for key in ("n", "out"):
        if key not in opts:
            raise ConfigError(f"sample needs {key}= (e.g. n=50000 out=samples/)")
    n = _positive_int("n", opts["n"])
    batch = _positive_int("batch", opts.get("batch", "100"))
    seed = _positive_int("seed", opts["seed"]) if "seed" in opts else int(cfg.seed)
    out = Path(opts["out"]).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"sample: out={out} already holds files; give a new or empty folder")
    run = load_run(str(cfg.ckpt), system="alphagan_train")
    module = run.module.eval()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    generator = module.ema_generator().to(device).eval()
    out.mkdir(parents=True, exist_ok=True)
    arrays = []
    with torch.no_grad(), tqdm(total=n, desc="sampling", unit="img") as bar:
        for index, start in enumerate(range(0, n, batch)):
            size = min(batch, n - start)
            z = chunk_noise(seed, index, size, module.model_cfg.latent_dim).to(device)
            images = to_uint8(generator(z).float()).permute(0, 2, 3, 1).cpu().numpy()
            for j, image in enumerate(images):
                Image.fromarray(image).save(out / f"{start + j:06d}.png")
            arrays.append(images)
            bar.update(size)
    samples = np.concatenate(arrays)
    np.savez(out / "samples.npz", samples)
    if n <= 64:
        grid = sample_grid(torch.from_numpy(samples).permute(0, 3, 1, 2).float() / 255.0)
        Image.fromarray(grid.mul(255).round().byte().permute(1, 2, 0).numpy()).save(
            out / "grid.png"
        )
    print(f"{n} samples ({samples.shape[1]}x{samples.shape[2]}) of the EMA generator in {out}")
    return 0
