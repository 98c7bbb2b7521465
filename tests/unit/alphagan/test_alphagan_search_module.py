"""The alphaGAN search module: where α's gradient comes from, the phases, derive, counters."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_modules.alphagan.config import SearchConfig, step_counts
from search_spaces.gan import EDGE_NAMES, Genotype, edge_ops
from tests.helpers.alphagan import blob_images, fit, tiny_module


def _alpha_grads(module, loss):
    return torch.autograd.grad(
        loss,
        module.generator.alphas(),
        retain_graph=True,
        allow_unused=True,
        materialize_grads=True,
    )


def _gap(module):
    module.worst.refresh(module.generator, module.discriminator, 2e-4, (0.0, 0.9))
    torch.manual_seed(0)
    real, z1, z2 = blob_images(8), torch.randn(8, 16), torch.randn(8, 16)
    return module.gap_terms(real, z1, z2)


def test_alpha_gradient_only_through_minmax_as_the_reference() -> None:
    """G_w holds its own frozen α: the maxmin term gives α no gradient (as in the reference)."""
    module = tiny_module()
    gap = _gap(module)
    g_gap, g_minmax = _alpha_grads(module, gap.gap), _alpha_grads(module, gap.minmax)
    assert any(g.abs().sum() > 0 for g in g_gap)
    for a, b in zip(g_gap, g_minmax, strict=True):
        assert torch.equal(a, b)
    assert not gap.maxmin.requires_grad


def test_alpha_gradient_through_both_terms_with_the_fix_flag() -> None:
    module = tiny_module(maxmin_alpha_grad=True)
    gap = _gap(module)
    g_maxmin = _alpha_grads(module, gap.maxmin)
    assert any(g.abs().sum() > 0 for g in g_maxmin)
    g_gap, g_minmax = _alpha_grads(module, gap.gap), _alpha_grads(module, gap.minmax)
    for total, mm, mx in zip(g_gap, g_minmax, g_maxmin, strict=True):
        assert torch.allclose(total, mm - mx, atol=1e-6)


def test_weight_phase_gives_alpha_no_gradient(tmp_path) -> None:
    """Weight phase alone (no worst-case, no α steps): α untouched, without any gradient, while
    G's and D's weights moved; the n_critic rhythm: G steps at D steps 0 and 5 (of 10); and the
    G-lr drift flag: epoch e (from 1) runs at the reference cosine's step e,
    lr = 1e-3 + (2e-4 - 1e-3)(1 + cos(pi e / 100)) / 2, D's lr unchanged."""
    module = tiny_module(worst_steps=0, arch_steps=0, g_lr_drift=True)
    alphas0 = [a.detach().clone() for a in module.generator.alphas()]
    g0 = [p.detach().clone() for p in module.generator.weights()]
    trainer = fit(module, tmp_path, epochs=2)
    for a, a0 in zip(module.generator.alphas(), alphas0, strict=True):
        assert a.grad is None and torch.equal(a.detach(), a0)
    assert any(not torch.equal(p, q) for p, q in zip(module.generator.weights(), g0, strict=True))
    assert (int(module.d_step), int(module.g_step), int(module.arch_step)) == (10, 2, 0)
    expected = 1e-3 + (2e-4 - 1e-3) * (1 + math.cos(math.pi * 2 / 100)) / 2
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(expected, rel=1e-6)
    assert trainer.optimizers[1].param_groups[0]["lr"] == pytest.approx(2e-4)


def test_search_epoch_in_bf16_moves_alpha_and_keeps_the_copies_apart(tmp_path) -> None:
    """One whole search epoch under bf16-mixed (every phase in the Trainer's autocast, the
    copies' raw Adam included): α moved and stayed fp32; the copies are outside the module."""
    module = tiny_module()
    alphas0 = [a.detach().clone() for a in module.generator.alphas()]
    fit(module, tmp_path, epochs=1, precision="bf16-mixed")
    assert int(module.arch_step) == 2
    alphas = module.generator.alphas()
    assert any(not torch.equal(a.detach(), b) for a, b in zip(alphas, alphas0, strict=True))
    assert all(torch.isfinite(a).all() and a.dtype == torch.float32 for a in alphas)
    # the copies are not in the module's state (checkpoints, DDP) and G_w's α stayed frozen
    assert not any(k.startswith("worst") for k in module.state_dict())
    assert all(not a.requires_grad for a in module.worst.generator.alphas())


def test_worst_case_steps_leave_g_and_d_alone() -> None:
    module = tiny_module()
    module.worst.refresh(module.generator, module.discriminator, 1e-2, (0.0, 0.9))
    g0 = {k: v.clone() for k, v in module.generator.state_dict().items()}
    d0 = {k: v.clone() for k, v in module.discriminator.state_dict().items()}
    real = blob_images(8)
    with torch.no_grad():
        fake = module.generator(torch.randn(8, 16))
    module.worst.d_step(real, fake)
    module.worst.g_step(torch.randn(8, 16), module.discriminator)
    for k, v in module.discriminator.state_dict().items():
        if "_u" not in k and "_v" not in k:  # spectral norm's power iteration runs in forward
            assert torch.equal(v, d0[k]), k
    for k, v in module.generator.state_dict().items():
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(v, g0[k]), k
    moved = [
        not torch.equal(a, b)
        for a, b in zip(module.worst.generator.weights(), module.generator.weights())
    ]
    assert any(moved)


def test_derive_picks_the_argmax_of_every_edge(tmp_path) -> None:
    module = tiny_module()
    chosen = {}
    with torch.no_grad():
        for a in module.generator.alphas():
            a.normal_()
    weights = module.generator.edge_weights()
    for name in EDGE_NAMES:
        chosen[name] = edge_ops(name)[int(weights[name].argmax())]
    genotype = module.genotype()
    assert genotype.edges == chosen
    path = genotype.save(tmp_path / "genotype.yaml")
    assert Genotype.load(path).edges == chosen


def test_variant_step_counts() -> None:
    assert step_counts(SearchConfig(variant="s")) == (22, 22, 20)
    assert step_counts(SearchConfig(variant="l")) == (392, 392, 20)
    assert step_counts(SearchConfig(variant="l", arch_steps=5, reference_loop_bounds=False)) == (
        390,
        390,
        5,
    )
    with pytest.raises(ValueError, match="variant"):
        step_counts(SearchConfig(variant="m"))
