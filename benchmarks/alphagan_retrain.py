"""alphaGAN retraining-iteration benchmark (``make bench BENCH=alphagan ARGS=--retrain``).

One iteration of the retraining (docs/alphagan.md, "Retraining recipe of the reference") with
the module's own networks and step functions
(:class:`~lightning_modules.alphagan.retrain.AlphaGANRetrain`: ``d_step_loss``,
``g_step_loss``, the EMA's ``update_parameters``; plain optimizers instead of Lightning's
wrappers): 5 D steps of batch ``dbs`` (G's samples drawn without G's graph) + 1 G step of batch
``gbs`` (D's parameters frozen) + the EMA update, for alphaGAN(l) at width 256 against the
AutoGAN D at 128, 32x32, fp32.

Two configurations: the paper's (D 64 / G 128) for the projected wall time of a full
50,000-iteration retrain on this machine, and the reference harness's (D 16 / G 32, fp32,
2 threads) side by side with ``alphagan_retrain_step.py`` run in a child process in the same
session (``--reference``; needs ``PEER_SRC``, see ``../shared/peers/README.md``). Variants: the
suite's defaults (channels-last, fused Adam) and the stock layout (contiguous, for-each Adam).
The plain generator has no FFT path (``model.conv`` only changes the supernet's edges).

Also the two costs of the 50,000-sample evaluation: the EMA generator's sample throughput and
the Inception feature throughput (torch-fidelity's network at its real size; random weights
unless ``--inception-weights`` names the real file: the speed is the same), with the projected
time of the whole evaluation.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from lightning_modules.alphagan.retrain import AlphaGANRetrain
from search_spaces.gan import load_genotype

PEER_SCRIPT = Path(__file__).resolve().parents[2] / "shared" / "peers" / "alphagan_retrain_step.py"
G_ITERS = 50_000


def build(device: str, channels_last: bool = True, fused: bool = True) -> AlphaGANRetrain:
    module = AlphaGANRetrain(
        load_genotype("alphagan_l"),
        model={"channels_last": channels_last, "d_init": "xavier_uniform"},
        optim={"fused": fused},
    )
    return module.to(device).train()


def iteration(module: AlphaGANRetrain, device: str, dbs: int, gbs: int):
    """A callable running one retraining iteration on fixed random images in [-1, 1]."""
    o = module.optim_cfg
    g = torch.Generator().manual_seed(0)
    images = [
        module._real((torch.rand(dbs, 3, 32, 32, generator=g) * 2 - 1).to(device)) for _ in range(5)
    ]
    G, D = module.generator, module.discriminator
    kw = {"fused": True} if o.fused else {"foreach": True}
    g_opt = torch.optim.Adam(G.parameters(), lr=o.g_lr, betas=tuple(o.betas), **kw)
    d_opt = torch.optim.Adam(D.parameters(), lr=o.d_lr, betas=tuple(o.betas), **kw)

    def run() -> None:
        for real in images:
            d_opt.zero_grad(set_to_none=True)
            module.d_step_loss(real)[0].backward()
            d_opt.step()
        D.requires_grad_(False)
        g_opt.zero_grad(set_to_none=True)
        module.g_step_loss(gbs).backward()
        g_opt.step()
        D.requires_grad_(True)
        module.ema.update_parameters(G)

    return run


def bench(device: str, dbs: int, gbs: int, warmup: int, reps: int, **kw) -> dict:
    from benchmarks.alphagan import time_it

    torch.manual_seed(0)
    module = build(device, **kw)
    wall, cpu = time_it(iteration(module, device, dbs, gbs), warmup, reps, device)
    med = statistics.median(wall)
    print(f"  retrain iteration D {dbs} / G {gbs} {kw or ''}: {med:.3f} s", file=sys.stderr)
    return {
        "batch_D": dbs,
        "batch_G": gbs,
        "device": device,
        "options": kw or {"channels_last": True, "fused": True},
        "median_s": round(med, 4),
        "times_s": [round(x, 4) for x in wall],
        "cpu_median_s": round(statistics.median(cpu), 4),
        "projected_50k_hours": round(med * G_ITERS / 3600, 2),
    }


def run_reference(threads: int, reps: int, warmup: int, dbs: int = 16, gbs: int = 32) -> dict:
    if not PEER_SCRIPT.is_file() or not os.environ.get("PEER_SRC"):
        raise SystemExit(f"--reference needs {PEER_SCRIPT} and PEER_SRC")
    env = {
        **os.environ,
        "AGR_REPS": str(reps),
        "AGR_WARMUP": str(warmup),
        "AGR_DBS": str(dbs),
        "AGR_GBS": str(gbs),
        "OMP_NUM_THREADS": str(threads),
    }
    print(f"reference harness {PEER_SCRIPT.name} (D {dbs} / G {gbs}) ...", file=sys.stderr)
    proc = subprocess.run(
        [sys.executable, str(PEER_SCRIPT)], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"reference harness failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


EVAL_SAMPLES = 50_000


def sample_throughput(device: str, batch: int = 256, warmup: int = 1, reps: int = 3) -> dict:
    """Images per second of the EMA generator of alphaGAN(l) (no grad, eval mode)."""
    from benchmarks.alphagan import time_it

    module = build(device)
    g = module.ema_generator().eval()

    @torch.no_grad()
    def run() -> None:
        g(module.z(batch))

    wall, _ = time_it(run, warmup, reps, device)
    per_s = batch / statistics.median(wall)
    return {
        "batch": batch,
        "images_per_s": round(per_s, 1),
        "projected_50k_s": round(EVAL_SAMPLES / per_s, 1),
    }


def inception_throughput(
    device: str, weights: str | None = None, batch: int = 32, warmup: int = 1, reps: int = 3
) -> dict:
    """Images per second through the Inception extractor (32x32 uint8 in, resized to 299)."""
    import tempfile

    from benchmarks.alphagan import time_it
    from lightning_modules.alphagan.scoring import build_extractor, to_uint8

    with tempfile.TemporaryDirectory() as tmp:
        if weights is None:
            from tests.helpers.scoring import write_random_inception_weights

            weights = str(write_random_inception_weights(Path(tmp) / "random-inception.pth"))
        extractor = build_extractor("inception", weights).to(device)
    images = to_uint8(torch.rand(batch, 3, 32, 32) * 2 - 1).to(device)
    wall, _ = time_it(lambda: extractor(images), warmup, reps, device)
    per_s = batch / statistics.median(wall)
    return {
        "batch": batch,
        "images_per_s": round(per_s, 2),
        "projected_50k_s": round(EVAL_SAMPLES / per_s, 1),
    }


def retrain_report(
    device: str,
    threads: int,
    reps: int,
    warmup: int,
    reference: bool,
    paper: bool = True,
    inception_weights: str | None = None,
) -> dict:
    """The retrain section of ``results/alphagan.json``: the harness configuration (suite,
    stock layout, and the reference between them when asked) and the paper's batch sizes."""
    out: dict = {"protocol": __doc__.split("\n\n")[1], "harness_config": []}
    if reference:
        out["reference"] = run_reference(threads, reps, warmup)
    out["harness_config"].append(bench(device, 16, 32, warmup, reps))
    out["harness_config"].append(
        bench(device, 16, 32, warmup, reps, channels_last=False, fused=False)
    )
    if reference:
        ref = out["reference"]["results"]["alphaGAN_l"]["iter_median_s"]
        ours = out["harness_config"][0]["median_s"]
        out["speedup_vs_reference_same_session"] = round(ref / ours, 2)
    if paper:
        out["paper_config"] = bench(device, 64, 128, warmup, reps)
    out["evaluation_50k"] = {
        "ema_sampling": sample_throughput(device),
        "inception_features": inception_throughput(device, inception_weights),
    }
    return out
