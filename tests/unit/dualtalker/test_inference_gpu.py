"""DualTalker inference on CUDA: the same frames as on the CPU, bf16 autocast finite, and peak
GPU memory growing at most linearly with the audio (4x the audio: at most ~4x the memory).

Skipped without CUDA (``tests/conftest.py``); ``make test-gpu`` runs them.
"""

from __future__ import annotations

import pytest
import torch

from lightning_modules.dualtalker import DualTalker, DualTalkerOptions

pytestmark = pytest.mark.gpu

V = 5023


def make_net(**overrides) -> DualTalker:
    torch.manual_seed(0)
    options = DualTalkerOptions(
        **{"audio_encoder": "tiny", "feature_dim": 64, "dual_target": "none", **overrides}
    )
    net = DualTalker(options, V, 8, 30).eval()
    with torch.no_grad():
        net.head.weight.normal_(0, 0.01)
    return net


@pytest.fixture
def no_tf32():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_gpu_prediction_equals_cpu_and_bf16_is_finite(no_tf32) -> None:
    net = make_net()
    audio, template, style = torch.randn(2, 48000), torch.zeros(2, 3 * V), torch.tensor([0, 5])
    cpu, _ = net.predict(audio, template, style)
    net.cuda()
    gpu, mask = net.predict(audio.cuda(), template.cuda(), style.cuda())
    assert gpu.shape == cpu.shape == (2, 90, 3 * V) and bool(mask.all())
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-4)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        half, _ = net.predict(audio.cuda(), template.cuda(), style.cuda())
    assert bool(torch.isfinite(half).all()) and (half.float() - gpu).abs().max() < 0.05


def test_gpu_memory_is_linear_in_the_audio_length() -> None:
    net = make_net(audio_window_s=10.0, audio_context_s=2.0).cuda()
    template, style = torch.zeros(1, 3 * V, device="cuda"), torch.tensor([0], device="cuda")
    peaks = []
    for seconds in (30, 120):
        audio = torch.randn(1, seconds * 16000, device="cuda")
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        vertices, _ = net.predict(audio, template, style)
        assert vertices.shape[1] == seconds * 30
        peaks.append(torch.cuda.max_memory_allocated() - base)
        del vertices
    assert peaks[1] <= 4.5 * peaks[0], peaks
