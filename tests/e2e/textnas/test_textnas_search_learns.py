"""The synthetic search finds something: its derived architecture, and the typical architecture
its trained controller samples, beat the median of random architectures of the same space, all
scored with the same trained shared weights."""

from __future__ import annotations

import statistics

import pytest
import torch
import yaml

from datamodules.text.synthetic import write_synthetic_sst
from experiments.run import resolve, train
from experiments.systems.textnas.search import build, full_val_loader
from lightning_modules.textnas.derive import derive
from search_spaces.text import RandomStrategy

# The demo's own search (4 epochs of 171 child steps, 200 controller steps each): about 100 s
# on the slower 2-core CI machines, so `make test-all` runs it and `make test` does not
# (tests/unit/textnas/test_controller.py checks that REINFORCE learns).
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


def test_derived_architecture_beats_the_random_median(tmp_path):
    data = write_synthetic_sst(tmp_path / "data")
    overrides = [
        f"data.root={data}",
        "data.generate=false",
        f"output_dir={tmp_path / 'out'}",
        "logger.wandb.mode=disabled",
        "trainer.enable_progress_bar=false",
    ]
    result = train("textnas_search_synthetic", overrides)  # the preset as the demo runs it
    candidates = yaml.safe_load((result.run_dir / "candidates.yaml").read_text())["candidates"]
    derived = candidates[0]["val_acc"]
    policy = [c["val_acc"] for c in candidates if c["source"].startswith("sample")]

    ckpt = torch.load(
        result.run_dir / "checkpoints/last.ckpt", map_location="cpu", weights_only=True
    )
    _, cfg = resolve("textnas_search_synthetic", overrides)
    module, dm = build(cfg, ckpt)
    module.load_state_dict(ckpt["state_dict"])
    dm.setup("fit")
    space = RandomStrategy(
        int(cfg.supernet.num_layers), k=int(cfg.supernet.k), ops=list(cfg.supernet.ops)
    )
    scored = derive(
        module.supernet,
        space,
        full_val_loader(dm),
        num_samples=15,
        generator=torch.Generator().manual_seed(7),
        include_argmax=False,
    )
    random_median = statistics.median(acc for _, acc in scored)
    policy_median = statistics.median(policy)
    print(
        f"derived {derived:.3f}, policy median {policy_median:.3f}, random median "
        f"{random_median:.3f}, random {sorted(round(a, 3) for _, a in scored)}"
    )
    # Measured on the 2-core CPU (no AVX-512), one thread, 2026-12-01, 4 epochs: derived 0.711,
    # the controller's samples' median 0.576, random median 0.457 (15 uniform architectures
    # from 0.426 to 0.759; 6 epochs gave 0.846 / 0.811 / 0.664). The majority class is 0.574.
    assert derived >= random_median + 0.05, (derived, sorted(acc for _, acc in scored))
    # The controller itself learned: the architectures it samples beat uniform ones.
    assert policy_median >= random_median + 0.05, (policy, sorted(acc for _, acc in scored))
