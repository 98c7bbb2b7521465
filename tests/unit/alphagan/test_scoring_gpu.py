"""FID and the Inception extractor on a CUDA device (skipped without one)."""

from __future__ import annotations

import pytest
import torch

from lightning_modules.alphagan.scoring import (
    INCEPTION_FILE,
    FeatureMoments,
    FrechetDistance,
    build_extractor,
    to_uint8,
)
from tests.helpers.scoring import write_random_inception_weights

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_fid_on_the_gpu_equals_the_cpu() -> None:
    g = torch.Generator().manual_seed(0)
    real = torch.randn(400, 16, generator=g, dtype=torch.float64)
    fake = torch.randn(300, 16, generator=g, dtype=torch.float64) * 1.5 + 0.2
    moments = FeatureMoments(16)
    moments.update(real)
    mu, sigma = moments.compute()
    values = []
    for device in ("cpu", "cuda"):
        fid = FrechetDistance(16, mu, sigma).to(device)
        for chunk in fake.float().split(64):  # float32 features, as the extractors give on GPU
            fid.update(chunk.to(device))
        values.append(float(fid.compute()))
    assert values[1] == pytest.approx(values[0], rel=1e-9)


def test_inception_on_the_gpu_ignores_autocast_and_tf32(tmp_path) -> None:
    path = write_random_inception_weights(tmp_path / INCEPTION_FILE)
    ext = build_extractor("inception", str(path))
    images = to_uint8(torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    cpu_features, cpu_logits = ext(images)
    ext.cuda()
    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        with torch.autocast("cuda", dtype=torch.bfloat16):
            features, logits = ext(images.cuda())
        assert torch.backends.cudnn.allow_tf32  # restored after the call
        plain, _ = ext(images.cuda())
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags
    assert features.device.type == "cuda" and features.dtype == torch.float64
    # autocast (bf16: ~1e-2 relative) and TF32 (~1e-3) changed nothing
    assert (features - plain).abs().max() <= 1e-6 * plain.abs().max()
    scale = cpu_features.abs().max()
    assert (features.cpu() - cpu_features).abs().max() <= 1e-4 * scale
    assert torch.allclose(logits.cpu(), cpu_logits, rtol=1e-3, atol=1e-4 * cpu_logits.abs().max())
