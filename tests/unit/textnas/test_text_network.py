"""The fixed TextNAS network: paper-size parameter count, padding, heads, options."""

from __future__ import annotations

import pytest
import torch

from search_spaces.text import (
    Architecture,
    TextNASClassifier,
    TextNASEncoder,
    TextNASOptions,
    count_parameters,
)
from search_spaces.text.network import LinearCombine, masked_pool
from tests.helpers.textnas import random_arch


def test_released_architecture_has_the_papers_parameter_count() -> None:
    """docs/textnas.md: 6,140,957 at C=256 with a 5-class head, embedding excluded."""
    encoder = TextNASEncoder(
        Architecture.released(), vocab_size=50, options=TextNASOptions(width=256)
    )
    model = TextNASClassifier(encoder, num_classes=5)
    assert count_parameters(model) == 6_140_957
    assert count_parameters(model, exclude_embedding=False) == 6_140_957 + 50 * 300


def test_official_post_bn_only_on_layers_with_skips() -> None:
    arch = Architecture.released()
    nni = TextNASEncoder(arch, 10, TextNASOptions(width=32, post_bn="always"))
    official = TextNASEncoder(arch, 10, TextNASOptions(width=32, post_bn="with_skips"))
    without_skips = sum(1 for layer in arch.layers if not layer.skips)
    assert without_skips > 0
    assert count_parameters(nni) - count_parameters(official) == without_skips * 2 * 32


def _batch(vocab: int = 40, b: int = 4, length: int = 12, pad: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab, (b, length), generator=g)
    mask = torch.ones(b, length, dtype=torch.bool)
    ids_padded = torch.cat([ids, torch.zeros(b, pad, dtype=torch.long)], dim=1)
    mask_padded = torch.cat([mask, torch.zeros(b, pad, dtype=torch.bool)], dim=1)
    return ids, mask, ids_padded, mask_padded


def test_fixed_network_ignores_padding_in_eval() -> None:
    torch.manual_seed(0)
    options = TextNASOptions(width=16, embed_dim=8, maxpool_ignores_padding=True)
    encoder = TextNASEncoder(Architecture.released(), 40, options).eval()
    ids, mask, ids_p, mask_p = _batch()
    with torch.no_grad():
        torch.testing.assert_close(encoder(ids_p, mask_p), encoder(ids, mask), rtol=1e-4, atol=1e-5)


def test_reference_network_changes_with_padding_because_of_max_pool() -> None:
    """Documented: the released architecture starts with a max pool that sees padding zeros."""
    torch.manual_seed(0)
    faithful = TextNASEncoder(
        Architecture.released(), 40, TextNASOptions(width=16, embed_dim=8)
    ).eval()
    fixed = TextNASEncoder(
        Architecture.released(),
        40,
        TextNASOptions(width=16, embed_dim=8, maxpool_ignores_padding=True),
    ).eval()
    fixed.load_state_dict(faithful.state_dict())
    with torch.no_grad():  # make layer outputs negative, as trained BatchNorm shifts can
        for model in (faithful, fixed):
            for layer in model.layers:
                layer.bn.bias.fill_(-3.0)
    ids, mask, ids_p, mask_p = _batch()
    with torch.no_grad():
        assert not torch.allclose(faithful(ids_p, mask_p), faithful(ids, mask), atol=1e-3)
        torch.testing.assert_close(fixed(ids_p, mask_p), fixed(ids, mask), rtol=1e-4, atol=1e-4)


def test_masked_mean_pool() -> None:
    x = torch.arange(12.0).view(1, 2, 6)
    mask = torch.tensor([[[1.0, 1.0, 1.0, 0.0, 0.0, 0.0]]])
    torch.testing.assert_close(masked_pool(x * mask, mask), torch.tensor([[1.0, 7.0]]))
    torch.testing.assert_close(masked_pool(x * mask, mask, "max"), torch.tensor([[2.0, 8.0]]))
    torch.testing.assert_close(masked_pool(x, None), x.mean(dim=2))


def test_linear_combine_is_a_softmax_weighted_sum() -> None:
    combine = LinearCombine(3)
    with torch.no_grad():
        combine.weight.copy_(torch.tensor([0.0, 1.0, 2.0]))
    hs = [torch.full((1, 1, 2), float(i + 1)) for i in range(3)]
    w = torch.softmax(torch.tensor([0.0, 1.0, 2.0]), 0)
    expected = float((w * torch.tensor([1.0, 2.0, 3.0])).sum())
    torch.testing.assert_close(combine(hs), torch.full((1, 1, 2), expected))
    assert torch.allclose(LinearCombine(24).weight, torch.full((24,), 1 / 24))


def test_pair_and_regression_heads() -> None:
    torch.manual_seed(0)
    arch = random_arch(4, seed=1)
    options = TextNASOptions(width=8, embed_dim=8)
    pair = TextNASClassifier(TextNASEncoder(arch, 30, options), num_classes=3, pair=True)
    ids, mask, _, _ = _batch(vocab=30)
    assert pair(ids, mask, ids.flip(0), mask).shape == (4, 3)
    assert pair.head.in_features == 4 * 8
    with pytest.raises(ValueError, match="ids_b"):
        pair(ids, mask)
    regression = TextNASClassifier(TextNASEncoder(arch, 30, options), num_classes=1)
    assert regression(ids, mask).shape == (4, 1)


def test_every_parameter_gets_a_gradient() -> None:
    torch.manual_seed(0)
    model = TextNASClassifier(
        TextNASEncoder(Architecture.released(), 30, TextNASOptions(width=8, embed_dim=8)), 2
    )
    ids, mask, ids_p, mask_p = _batch(vocab=30)
    model(ids_p, mask_p).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_glove_init_and_bad_options() -> None:
    arch = random_arch(3, seed=0)
    init = torch.randn(20, 8)
    encoder = TextNASEncoder(arch, 20, TextNASOptions(width=8, embed_dim=8), embedding_init=init)
    torch.testing.assert_close(encoder.embedding.weight.detach(), init)
    with pytest.raises(ValueError, match="embedding_init has shape"):
        TextNASEncoder(arch, 21, TextNASOptions(width=8, embed_dim=8), embedding_init=init)
    with pytest.raises(ValueError, match="post_bn"):
        TextNASOptions(post_bn="sometimes")
    with pytest.raises(ValueError, match="cnn_keep"):
        TextNASOptions(cnn_keep=0.0)
    random_init = TextNASEncoder(arch, 20, TextNASOptions(width=8, embed_dim=8))
    assert torch.all(random_init.embedding.weight[0] == 0)
    assert random_init.embedding.weight.abs().max() <= 0.25
