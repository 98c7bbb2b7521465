"""DualTalker training on CUDA under bf16-mixed: a few teacher-forced and autoregressive steps
with the dual task and the consistency loss on, finite losses, the weights moving, the frozen
CNN's cached features staying on the CPU.

Skipped without CUDA (``tests/conftest.py``); ``make test-gpu`` runs them.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch

from lightning_modules.dualtalker.module import DualTalkerModule

pytestmark = pytest.mark.gpu

V, SUBJECTS = 30, ["s0", "s1"]


def batches(count: int = 3) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(count):
        frames = [18, 12]
        samples = [int(n / 30 * 16000) for n in frames]
        template = torch.randn(2, 3 * V, generator=g) * 0.1
        frame_mask = torch.arange(18)[None] < torch.tensor(frames)[:, None]
        out.append(
            {
                "audio": torch.randn(2, max(samples), generator=g),
                "audio_mask": torch.arange(max(samples))[None] < torch.tensor(samples)[:, None],
                "vertices": template[:, None] + 0.01 * torch.randn(2, 18, 3 * V, generator=g),
                "frame_mask": frame_mask,
                "template": template,
                "style": torch.tensor([0, 1]),
                "text": ["", ""],
                "name": [f"s0_{i}a", f"s1_{i}b"],
            }
        )
    return out


@pytest.mark.parametrize("teacher_forcing", [True, False])
def test_bf16_mixed_training_steps(teacher_forcing: bool, tmp_path) -> None:
    torch.manual_seed(0)
    module = DualTalkerModule(
        {
            "audio_encoder": "tiny",
            "feature_dim": 16,
            "teacher_forcing": teacher_forcing,
            "consistency": "cosine+infonce",
        },
        V,
        SUBJECTS,
        fps=30,
        lip_vertices=[0, 1, 2],
        evaluation={"plots": False},
    )
    before = {k: v.detach().clone() for k, v in module.named_parameters() if v.requires_grad}
    trainer = L.Trainer(
        accelerator="gpu",
        devices=1,
        precision="bf16-mixed",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches(), None))
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss_epoch"]) and torch.isfinite(
        metrics["train/dual_epoch"]
    )
    moved = [
        not torch.equal(p.detach().cpu(), before[k].cpu())
        for k, p in module.named_parameters()
        if k in before
    ]
    assert sum(moved) > len(moved) // 2
    cache = module.net.audio_encoder.cache
    assert len(cache) == 6 and all(t.device.type == "cpu" for t in cache.values())
