"""The retrain module's pieces, against values worked out by hand: the n_critic schedule, the
EMA of G (decay, start, buffers), the D init flag, the lr decay, the score keys."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_modules.alphagan.retrain import AlphaGANRetrain, chunk_noise, score_key
from search_spaces.gan import load_genotype

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(width=8, d_width=8, latent_dim=16, bottom_width=1, retarget=True, channels_last=False)


def module(**train) -> AlphaGANRetrain:
    return AlphaGANRetrain(
        load_genotype("alphagan_s"), model=TINY, train={"gen_batch_size": 4, **train}
    )


def test_ema_starts_at_the_initial_weights_and_follows_the_formula() -> None:
    m = module(ema_decay=0.9)
    w0 = [p.detach().clone() for p in m.generator.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(m.ema.module.parameters(), w0, strict=True))
    with torch.no_grad():
        for p in m.generator.parameters():
            p.add_(1.0)
    m.ema.update_parameters(m.generator)
    for avg, start in zip(m.ema.module.parameters(), w0, strict=True):
        torch.testing.assert_close(avg, 0.9 * start + 0.1 * (start + 1.0))


def test_ema_uses_live_batchnorm_buffers_unless_averaged() -> None:
    live = module()
    with torch.no_grad():
        for b in live.generator.buffers():
            if b.is_floating_point():
                b.fill_(3.0)
    g = live.ema_generator()
    assert all(torch.equal(a, b) for a, b in zip(g.buffers(), live.generator.buffers()))
    averaged = module(ema_buffers=True)
    before = [b.clone() for b in averaged.ema.module.buffers()]
    with torch.no_grad():
        for b in averaged.generator.buffers():
            if b.is_floating_point():
                b.fill_(3.0)
    g = averaged.ema_generator()
    assert all(torch.equal(a, b) for a, b in zip(g.buffers(), before, strict=True))


def test_discriminator_init_flag() -> None:
    """reference: D keeps PyTorch's default init (the reference's init lands on a stale copy);
    xavier_uniform: every D convolution is re-initialised; G is Xavier either way."""
    torch.manual_seed(0)
    ref = AlphaGANRetrain(load_genotype("alphagan_s"), model=TINY, seed=3)
    xav = AlphaGANRetrain(
        load_genotype("alphagan_s"), model={**TINY, "d_init": "xavier_uniform"}, seed=3
    )
    conv = lambda m: m.discriminator.blocks[0].c1.parametrizations.weight.original  # noqa: E731
    fresh = nn.Conv2d(3, 8, 3, padding=1)  # default init bound: 1/sqrt(fan_in) (kaiming a=√5)
    bound_default = 1 / (3 * 9) ** 0.5
    bound_xavier = (6 / (3 * 9 + 8 * 9)) ** 0.5
    assert conv(ref).abs().max() <= bound_default < conv(xav).abs().max() <= bound_xavier
    assert fresh.weight.abs().max() <= bound_default
    for a, b in zip(ref.generator.parameters(), xav.generator.parameters(), strict=True):
        assert torch.equal(a, b)


def test_lr_factor_is_the_reference_linear_decay() -> None:
    m = module(g_iters=100, lr_decay=True, lr_decay_start=60)
    assert m.lr_factor(60) == 1.0
    assert m.lr_factor(80) == pytest.approx(1 - 0.99 * 0.5)
    assert m.lr_factor(100) == pytest.approx(0.01) == m.lr_factor(200)


def test_score_keys_say_the_count_and_standin() -> None:
    assert score_key("fid", 5000, "inception") == "val/fid_5k"
    assert score_key("fid_holdout", 256, "standin") == "val/fid_holdout_standin_256"
    assert score_key("is", 50_000, "inception") == "val/is_50k"


def test_scoring_noise_does_not_depend_on_the_ranks() -> None:
    a = chunk_noise(5, 3, 10, 4)
    assert torch.equal(a, chunk_noise(5, 3, 10, 4)) and not torch.equal(a, chunk_noise(5, 4, 10, 4))
