"""TextNAS on CUDA: a bf16 run end to end, the released network at full width under bf16
autocast, and the cuDNN GRU against the CPU GRU of ``search_spaces/text/cpu_kernels.py``.

Skipped without CUDA (``tests/conftest.py``); ``make test-gpu`` runs them.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from experiments.run import train
from search_spaces.text import Architecture, TextNASClassifier, TextNASEncoder, TextNASOptions
from search_spaces.text.ops import RecurrentOp
from tests.e2e.conftest import tiny

pytestmark = pytest.mark.gpu


@pytest.fixture
def no_tf32():
    """Full fp32 matmuls and cuDNN (H100 would otherwise use TF32 in the GRU)."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@pytest.mark.parametrize(
    "optim",
    [
        "defaults",
        "unfused",
    ],
)
def test_tiny_bf16_run_on_gpu(optim, sst_dir, tiny_arch, tmp_path):
    extra = ["trainer.accelerator=gpu", "trainer.devices=1", "trainer.precision=bf16-mixed"]
    if optim == "unfused":
        extra.append("optim.fused=false")
    result = train(
        "textnas_train_synthetic",
        tiny(tmp_path, f"data.root={sst_dir}", f"model.architecture={tiny_arch}", *extra),
    )
    fit = result.metrics["fit"]
    assert fit["global_step"] == 4
    for key in ("train/loss", "val/loss", "val/acc"):
        assert math.isfinite(fit[key]), (key, fit)
    ckpt = torch.load(
        result.run_dir / "checkpoints/last.ckpt", map_location="cpu", weights_only=True
    )
    for name, tensor in ckpt["state_dict"].items():
        if tensor.is_floating_point():
            assert tensor.dtype == torch.float32 and torch.isfinite(tensor).all(), name


def _batch(batch: int, steps: int, vocab: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab, (batch, steps), generator=g)
    lengths = torch.randint(1, steps + 1, (batch,), generator=g)
    lengths[0] = steps  # the longest row fills the batch
    mask = torch.arange(steps)[None, :] < lengths[:, None]
    ids = ids.masked_fill(~mask, 0)
    labels = torch.randint(0, 2, (batch,), generator=g)
    return ids.to(device), mask.to(device), labels.to(device)


def test_released_architecture_full_width_bf16_backward_on_cuda():
    torch.manual_seed(0)
    vocab = 1000
    options = TextNASOptions(width=256, embed_dim=300)
    encoder = TextNASEncoder(Architecture.released(), vocab, options, None)
    net = TextNASClassifier(encoder, 2).cuda().train()
    ids, mask, labels = _batch(16, 48, vocab, "cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = net(ids, mask)
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
    assert logits.dtype == torch.bfloat16  # autocast really ran the matmuls in bf16
    assert torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing  # every op of the architecture takes part
    for name, p in net.named_parameters():
        assert p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all(), name
    assert sum(float(p.grad.abs().sum()) for p in net.parameters()) > 0


@pytest.mark.parametrize("padded", [True, False])
def test_cuda_gru_matches_cpu_bigru(padded, no_tf32):
    """Same weights: cuDNN ``nn.GRU`` (packed) on CUDA == ``bidirectional_gru_summed`` on CPU."""
    torch.manual_seed(0)
    channels, batch, steps = 32, 6, 11
    op_cpu = RecurrentOp(channels, dropout=0.0).eval()
    op_cuda = copy.deepcopy(op_cpu).cuda()
    x = torch.randn(batch, channels, steps)
    mask = None
    if padded:
        lengths = torch.tensor([11, 7, 1, 11, 4, 9])
        mask = (torch.arange(steps)[None, :] < lengths[:, None])[:, None, :].float()  # (B, 1, L)
        x = x * mask  # the network zeroes padded positions before every op

    x_cpu = x.clone().requires_grad_(True)
    x_cuda = x.cuda().requires_grad_(True)
    out_cpu = op_cpu(x_cpu, mask)
    out_cuda = op_cuda(x_cuda, None if mask is None else mask.cuda())
    assert out_cpu.shape == out_cuda.shape == (batch, channels, steps)
    torch.testing.assert_close(out_cuda.cpu(), out_cpu, atol=1e-5, rtol=1e-4)

    weight = torch.randn(batch, channels, steps)  # a loss that weights every output
    (out_cpu * weight).sum().backward()
    (out_cuda * weight.cuda()).sum().backward()
    torch.testing.assert_close(x_cuda.grad.cpu(), x_cpu.grad, atol=1e-4, rtol=1e-4)
    for (name, p_cpu), p_cuda in zip(op_cpu.named_parameters(), op_cuda.parameters()):
        torch.testing.assert_close(p_cuda.grad.cpu(), p_cpu.grad, atol=1e-4, rtol=1e-4, msg=name)
