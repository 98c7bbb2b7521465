"""The TextNAS supernet: equality with the fixed network, sparse gradients, stable names,
padding, error messages, the random strategy and the paper-size parameter count."""

from __future__ import annotations

import pytest
import torch

from search_spaces.text import (
    OP_NAMES,
    Architecture,
    ArchitectureError,
    TextNASClassifier,
    TextNASEncoder,
)
from search_spaces.text.network import TextNASOptions, count_parameters
from search_spaces.text.strategies import RandomStrategy
from search_spaces.text.supernet import TextNASSupernet
from tests.helpers.textnas import random_arch

VOCAB = 40
SMALL = dict(width=16, embed_dim=8)
NO_DROPOUT = dict(embed_keep=1.0, cnn_keep=1.0, rnn_keep=1.0, attention_keep=1.0, final_keep=1.0)


pytestmark = pytest.mark.usefixtures("one_thread")


def _batch(b: int = 4, length: int = 10, pad: int = 5, seed: int = 0):
    """Unpadded ids/mask and the same batch with ``pad`` padding positions after some rows, so
    the padded batch has rows of different true lengths."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, VOCAB, (b, length), generator=g)
    mask = torch.ones(b, length, dtype=torch.bool)
    ids_p = torch.cat([ids, torch.zeros(b, pad, dtype=torch.long)], dim=1)
    mask_p = torch.cat([mask, torch.zeros(b, pad, dtype=torch.bool)], dim=1)
    ids_p[0, length : length + 2] = 3  # row 0 is two tokens longer
    mask_p[0, length : length + 2] = True
    return ids, mask, ids_p, mask_p


def _randomise_bn(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial BN affine parameters and running statistics everywhere."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.weight.copy_(1.0 + 0.3 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(1.0 + torch.rand(m.running_var.shape, generator=g))


def _fixed(supernet: TextNASSupernet, arch: Architecture) -> TextNASClassifier:
    """A freshly initialised fixed network, then the supernet's weights loaded strictly."""
    encoder = TextNASEncoder(arch, VOCAB, supernet.options)
    fixed = TextNASClassifier(
        encoder, supernet.num_classes, pair=supernet.pair, final_keep=supernet.options.final_keep
    )
    fixed.load_state_dict(supernet.fixed_state_dict(arch), strict=True)
    return fixed


def _archs(num_layers: int, k: int, n: int, seed: int, ops=OP_NAMES) -> list[Architecture]:
    g = torch.Generator().manual_seed(seed)
    strategy = RandomStrategy(num_layers, k, ops)
    return [strategy.sample(g) for _ in range(n)]


# ------------------------------------------------------------------ (1) fixed == supernet


@pytest.mark.parametrize("post_bn", ["always", "with_skips"])
def test_supernet_equals_fixed_network_in_eval(post_bn: str) -> None:
    torch.manual_seed(0)
    options = TextNASOptions(**SMALL, post_bn=post_bn)
    supernet = TextNASSupernet(VOCAB, num_layers=24, k=5, options=options, num_classes=3)
    _randomise_bn(supernet, seed=1)
    supernet.eval()
    ids, mask, ids_p, mask_p = _batch()
    archs = [Architecture.released(), *_archs(24, 5, 3, seed=2)]
    for arch in archs:
        fixed = _fixed(supernet, arch).eval()
        with torch.no_grad():
            for x, m in ((ids, mask), (ids_p, mask_p)):
                torch.testing.assert_close(supernet(x, m, arch), fixed(x, m), rtol=1e-5, atol=1e-6)
        via_helper = supernet.fixed_model(arch)
        assert not via_helper.training
        with torch.no_grad():
            torch.testing.assert_close(via_helper(ids_p, mask_p), fixed(ids_p, mask_p))


def test_supernet_equals_fixed_network_in_train_mode_with_same_bn_state() -> None:
    """Keep probabilities 1.0 (no dropout randomness); BatchNorm uses batch statistics and both
    networks must update the running statistics of exactly the selected BNs identically."""
    torch.manual_seed(0)
    options = TextNASOptions(**SMALL, **NO_DROPOUT, post_bn="with_skips")
    supernet = TextNASSupernet(VOCAB, num_layers=8, k=3, options=options, num_classes=2, pair=True)
    _randomise_bn(supernet, seed=3)
    _, _, ids_p, mask_p = _batch(seed=4)
    ids_b, mask_b = ids_p.flip(0), mask_p.flip(0)
    for arch in _archs(8, 3, 3, seed=5):
        fixed = _fixed(supernet, arch).train()
        supernet.train()
        out_fixed = fixed(ids_p, mask_p, ids_b, mask_b)
        out_super = supernet(ids_p, mask_p, arch, ids_b, mask_b)
        torch.testing.assert_close(out_super, out_fixed, rtol=1e-5, atol=1e-6)
        after = supernet.fixed_state_dict(arch)
        for name, value in fixed.state_dict().items():
            torch.testing.assert_close(after[name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_fixed_state_dict_names_match_the_fixed_network() -> None:
    supernet = TextNASSupernet(
        VOCAB, num_layers=24, options=TextNASOptions(**SMALL, post_bn="with_skips")
    )
    arch = Architecture.released()
    fixed = TextNASClassifier(TextNASEncoder(arch, VOCAB, supernet.options), 5)
    assert set(supernet.fixed_state_dict(arch)) == set(fixed.state_dict())
    sd = supernet.fixed_state_dict(arch)
    assert sd["encoder.layers.2.op.conv.weight"] is not None
    assert sd["encoder.layers.2.op.conv.weight"].data_ptr() == (
        supernet.layers[2].ops["conv7"].conv.weight.data_ptr()
    )
    assert "encoder.layers.0.bn.weight" not in sd  # released layer 0 has no skips
    assert set(supernet.fixed_encoder_state_dict(arch)) == set(fixed.encoder.state_dict())


# ------------------------------------------------------------- (2) sparse gradients


def test_only_the_sampled_path_gets_gradients_and_they_match_the_fixed_network() -> None:
    torch.manual_seed(0)
    options = TextNASOptions(**SMALL, **NO_DROPOUT, post_bn="with_skips")
    supernet = TextNASSupernet(VOCAB, num_layers=6, k=3, options=options, num_classes=2)
    arch = Architecture.from_dict(
        {
            "k": 3,
            "layers": [
                {"op": "conv3", "input": "stem"},
                {"op": "rnn", "input": 0, "skips": []},
                {"op": "attention", "input": 0, "skips": [0]},
                {"op": "max_pool", "input": 2, "skips": [1]},
                {"op": "conv7", "input": 1, "skips": []},
                {"op": "conv1", "input": 4, "skips": [0, 3]},
            ],
        }
    )
    fixed = _fixed(supernet, arch)
    _, _, ids_p, mask_p = _batch(seed=6)
    supernet(ids_p, mask_p, arch).square().sum().backward()
    fixed(ids_p, mask_p).square().sum().backward()

    for i, layer in enumerate(supernet.layers):
        spec = arch.layers[i]
        for op_name, op in layer.ops.items():
            for name, p in op.named_parameters():
                if op_name == spec.op:
                    assert p.grad is not None and p.grad.abs().sum() > 0, (i, op_name, name)
                else:
                    assert p.grad is None, (
                        f"layer {i}: unselected op {op_name}.{name} has a gradient"
                    )
        bn_grad = layer.bn.weight.grad
        assert (bn_grad is not None) == bool(spec.skips), f"layer {i}: post-sum BN gradient"

    fixed_grads = {name: p.grad for name, p in fixed.named_parameters()}
    # The fixed state dict shares storage with the supernet parameters: match grads by pointer.
    by_ptr = {p.data_ptr(): p for p in supernet.parameters()}
    for name, value in supernet.fixed_state_dict(arch).items():
        if name in fixed_grads:
            torch.testing.assert_close(
                by_ptr[value.data_ptr()].grad, fixed_grads[name], rtol=1e-4, atol=1e-6, msg=name
            )


# ------------------------------------------------------------------- (3) stable names


def test_parameter_names_do_not_depend_on_seed_order_or_architecture() -> None:
    torch.manual_seed(1)
    a = TextNASSupernet(VOCAB, num_layers=4, k=2, options=TextNASOptions(**SMALL))
    torch.manual_seed(2)
    b = TextNASSupernet(
        VOCAB, num_layers=4, k=2, ops=tuple(reversed(OP_NAMES)), options=TextNASOptions(**SMALL)
    )
    c = TextNASSupernet(
        VOCAB,
        num_layers=4,
        k=2,
        ops=("maxpool", "biGRU", "conv7", "conv1", "attn", "avgpool", "conv5", "conv3"),
        options=TextNASOptions(**SMALL),
    )
    names = [n for n, _ in a.named_parameters()]
    assert names == [n for n, _ in b.named_parameters()] == [n for n, _ in c.named_parameters()]
    assert list(a.state_dict()) == list(b.state_dict())
    assert a.ops == b.ops == c.ops == OP_NAMES
    assert "layers.3.ops.conv7.conv.weight" in names and "layers.3.bn.weight" in names
    assert "layers.1.ops.rnn.gru.weight_hh_l0_reverse" in names
    assert not torch.equal(
        a.layers[0].ops["conv1"].conv.weight, b.layers[0].ops["conv1"].conv.weight
    )
    # running architectures changes nothing about the names
    before = list(a.state_dict())
    ids, mask, _, _ = _batch(length=6, pad=0)
    for arch in _archs(4, 2, 3, seed=0):
        a(ids, mask, arch)
    assert list(a.state_dict()) == before


# ------------------------------------------------------------------------ (4) padding


def test_padding_does_not_change_outputs_in_eval() -> None:
    """Eval mode (running BN statistics), ``maxpool_ignores_padding=True``: padded and unpadded
    batches agree. The reference max pool sees padding zeros (NNI ``ops.py``,
    test_text_network.py); that faithful behaviour is shown by the second half: with negative layer
    outputs, the padded zeros win the max at the last real token and the logits change."""
    torch.manual_seed(0)
    fixed_opts = TextNASOptions(**SMALL, maxpool_ignores_padding=True)
    supernet = TextNASSupernet(VOCAB, num_layers=24, options=fixed_opts).eval()
    _randomise_bn(supernet, seed=7)
    faithful = TextNASSupernet(VOCAB, num_layers=24, options=TextNASOptions(**SMALL)).eval()
    faithful.load_state_dict(supernet.state_dict())
    ids, mask, ids_p, mask_p = _batch(pad=6)
    ids_p[0, 10:12], mask_p[0, 10:12] = 0, False  # equal true lengths: same real tokens
    with torch.no_grad():
        for arch in [Architecture.released(), *_archs(24, 5, 2, seed=8)]:
            torch.testing.assert_close(
                supernet(ids_p, mask_p, arch), supernet(ids, mask, arch), rtol=1e-4, atol=1e-5
            )
        for model in (supernet, faithful):
            for layer in model.layers:
                layer.bn.bias.fill_(-3.0)
        arch = Architecture.released()  # layer 0 is a max pool
        assert not torch.allclose(
            faithful(ids_p, mask_p, arch), faithful(ids, mask, arch), atol=1e-3
        )
        torch.testing.assert_close(
            supernet(ids_p, mask_p, arch), supernet(ids, mask, arch), rtol=1e-4, atol=1e-4
        )


# ------------------------------------------------------------------------- (5) errors


def test_architecture_mismatch_errors() -> None:
    supernet = TextNASSupernet(
        VOCAB, num_layers=24, k=5, ops=("conv1", "conv3"), options=TextNASOptions(**SMALL)
    )
    with pytest.raises(ArchitectureError, match="architecture has 12 layers, the supernet 24"):
        supernet.validate_architecture(random_arch(12, k=5, ops=("conv1",)))
    with pytest.raises(ArchitectureError, match="architecture has k=1 .*the supernet k=5"):
        supernet.validate_architecture(random_arch(24, k=1, ops=("conv1",)))
    arch = Architecture.released()
    with pytest.raises(
        ArchitectureError,
        match=r"layer 0: op 'max_pool' is not in this supernet's op set \(conv1, conv3\)",
    ):
        supernet.validate_architecture(arch)
    ids, mask, _, _ = _batch(pad=0)
    with pytest.raises(ValueError, match="not in this supernet's op set"):
        supernet(ids, mask, arch)
    with pytest.raises(ValueError, match="not in this supernet's op set"):
        supernet.fixed_state_dict(arch)
    ok = random_arch(24, k=5, seed=3, ops=("conv3", "conv1"))
    assert supernet.validate_architecture(ok) is ok
    with pytest.raises(ValueError, match="ids_b"):
        TextNASSupernet(VOCAB, num_layers=2, k=1, options=TextNASOptions(**SMALL), pair=True)(
            ids, mask, random_arch(2, k=1)
        )


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match=r"k=5 .*larger than the number of layers \(3\)"):
        TextNASSupernet(VOCAB, num_layers=3, k=5)
    with pytest.raises(
        ValueError, match=r"unknown op 'conv9'.*valid ops: conv1, conv3, .*attention"
    ):
        TextNASSupernet(VOCAB, num_layers=3, k=1, ops=("conv1", "conv9"))
    with pytest.raises(ValueError, match="listed twice"):
        TextNASSupernet(VOCAB, num_layers=3, k=1, ops=("conv1", "conv1x1"))
    with pytest.raises(ValueError, match="empty"):
        TextNASSupernet(VOCAB, num_layers=3, k=1, ops=())
    with pytest.raises(ValueError, match="k=4 .*number of layers \\(2\\)"):
        RandomStrategy(2, 4)
    with pytest.raises(ValueError, match="skip_prob"):
        RandomStrategy(4, 2, skip_prob=1.5)


# ----------------------------------------------------------------- (6) random strategy


def test_random_strategy_is_deterministic_per_generator_and_valid() -> None:
    strategy = RandomStrategy(24, 5)
    a = [strategy.sample(torch.Generator().manual_seed(11)) for _ in range(1)]
    g1, g2 = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    seq1 = [strategy.sample(g1) for _ in range(5)]
    seq2 = [strategy.sample(g2) for _ in range(5)]
    assert seq1 == seq2 and seq1[0] == a[0]
    assert len(set(seq1)) == 5
    assert strategy.sample(torch.Generator().manual_seed(12)) != seq1[0]
    # draws come only from the generator: the global RNG is irrelevant
    torch.manual_seed(0)
    x = strategy.sample(torch.Generator().manual_seed(11))
    torch.manual_seed(1)
    assert strategy.sample(torch.Generator().manual_seed(11)) == x
    for arch in seq1:
        arch.validate(num_layers=24, k=5)
    # a restricted op set, given in any order, and the supernet's (sorted) op set draw the same
    sub = RandomStrategy(6, 2, ops=("rnn", "conv1"))
    arch = sub.sample(torch.Generator().manual_seed(3))
    assert {spec.op for spec in arch.layers} <= {"conv1", "rnn"}
    supernet = TextNASSupernet(
        VOCAB, num_layers=6, k=2, ops=("conv1", "rnn"), options=TextNASOptions(**SMALL)
    )
    assert RandomStrategy(6, 2, supernet.ops).sample(torch.Generator().manual_seed(3)) == arch


def test_random_strategy_statistics() -> None:
    num_layers, k, n = 12, 5, 600
    strategy = RandomStrategy(num_layers, k)
    g = torch.Generator().manual_seed(0)
    archs = [strategy.sample(g) for _ in range(n)]
    skip_rate = sum(a.num_skips() for a in archs) / (n * archs[0].num_possible_skips())
    assert abs(skip_rate - 0.5) < 0.02  # 39,600 Bernoulli(0.5) draws: sd 0.0025
    op_freq = torch.zeros(len(OP_NAMES))
    for a in archs:
        for spec in a.layers:
            op_freq[OP_NAMES.index(spec.op)] += 1
    op_freq /= n * num_layers  # 7,200 draws: sd of each frequency ~ 0.004
    assert torch.all((op_freq - 1 / 8).abs() < 0.02), op_freq
    # inputs uniform among the previous min(i, k) layers: layer 11 has 5 candidates 6..10
    counts = torch.bincount(torch.tensor([a.layers[11].input for a in archs]), minlength=11)[6:]
    assert counts.sum() == n and torch.all((counts / n - 0.2).abs() < 0.06), counts
    assert all(a.layers[0].input == -1 for a in archs)
    assert {a.layers[1].input for a in archs} == {0}
    assert {a.layers[2].input for a in archs} == {0, 1}
    none = RandomStrategy(5, 2, skip_prob=0.0).sample(g)
    every = RandomStrategy(5, 2, skip_prob=1.0).sample(g)
    assert none.num_skips() == 0 and every.num_skips() == every.num_possible_skips()


# -------------------------------------------------------------- (7) parameter count


# docs/textnas.md, "Parameter counts", per op at C = 256 (weights + bias + BN affine).
PER_OP_256 = {
    "conv1": 66_304,
    "conv3": 197_376,
    "conv5": 328_448,
    "conv7": 459_520,
    "avg_pool": 0,
    "max_pool": 0,
    "rnn": 789_504,
    "attention": 197_888,
}


def _expected_supernet_params(
    width: int,
    per_op: dict[str, int],
    num_layers: int = 24,
    embed_dim: int = 300,
    num_classes: int = 5,
) -> int:
    per_layer = sum(per_op.values()) + 2 * width  # all ops + the post-sum BN (NNI: always)
    stem = embed_dim * width + width + 2 * width  # 1x1 conv + BN
    return num_layers * per_layer + stem + num_layers + width * num_classes + num_classes


def test_parameter_count_matches_the_reference_sheet() -> None:
    with torch.device("meta"):  # 49 M parameters without allocating them
        supernet = TextNASSupernet(100, num_layers=24, k=5, options=TextNASOptions(width=256))
    for op, expected in PER_OP_256.items():
        assert sum(p.numel() for p in supernet.layers[7].ops[op].parameters()) == expected, op
    expected = _expected_supernet_params(256, PER_OP_256)
    assert expected == 49_028_125  # 24 x 2,039,552 + stem 77,568 + combine 24 + head 1,285
    assert count_parameters(supernet) == expected
    assert round(expected / 1e6, 2) == 49.03  # docs/textnas.md: 49.03 M, 2.04 M per layer
    assert count_parameters(supernet, exclude_embedding=False) == expected + 100 * 300
    with torch.device("meta"):  # the official search width: 0.80 M
        small = TextNASSupernet(100, num_layers=24, k=5, options=TextNASOptions(width=32))
    assert count_parameters(small) == 795_549
    assert round(count_parameters(small) / 1e6, 2) == 0.80


# ------------------------------------------------------------------ init of the shared weights


def _uniform_bound(weight: torch.Tensor) -> float:
    """The bound b of U[-b, b] that ``weight``'s spread matches (std = b / sqrt(3))."""
    return float(weight.detach().std()) * 3**0.5


@pytest.mark.parametrize("init", ["pytorch", "xavier"])
def test_supernet_init_of_shared_weights(init: str) -> None:
    torch.manual_seed(0)
    width, classes = 64, 5
    options = TextNASOptions(width=width, embed_dim=32)
    supernet = TextNASSupernet(
        VOCAB, num_layers=2, k=2, options=options, num_classes=classes, init=init
    )
    assert supernet.init == init
    conv = supernet.layers[1].ops["conv3"].conv.weight  # (64, 64, 3): fan_in = fan_out = 192
    query = supernet.layers[1].ops["attention"].query.weight  # Linear(64, 64)
    head = supernet.head.weight
    if init == "pytorch":  # kaiming_uniform(a=sqrt(5)): U[-1/sqrt(fan_in), 1/sqrt(fan_in)]
        bounds = {"conv": 1 / 192**0.5, "query": 1 / width**0.5, "head": 1 / width**0.5}
    else:  # xavier_uniform: U[-sqrt(6/(fan_in+fan_out)), ...]
        bounds = {
            "conv": (6 / 384) ** 0.5,
            "query": (6 / 128) ** 0.5,
            "head": (6 / (width + classes)) ** 0.5,
        }
    for name, weight in (("conv", conv), ("query", query), ("head", head)):
        bound = bounds[name]
        assert weight.abs().max() <= bound + 1e-7, name
        assert _uniform_bound(weight) == pytest.approx(bound, rel=0.1), name
    # the same either way: GRU and bias defaults, BatchNorm 1/0, the embedding U[-0.25, 0.25)
    gru = supernet.layers[0].ops["rnn"].gru.weight_hh_l0
    assert gru.abs().max() <= 1 / width**0.5 and _uniform_bound(gru) > 0.9 / width**0.5
    conv_bias = supernet.layers[1].ops["conv3"].conv.bias
    assert conv_bias.abs().max() <= 1 / 192**0.5
    bn = supernet.layers[1].bn
    assert torch.equal(bn.weight, torch.ones(width)) and torch.equal(bn.bias, torch.zeros(width))
    emb = supernet.embedding.weight
    assert torch.equal(emb[0], torch.zeros(32)) and emb.abs().max() <= 0.25
    assert _uniform_bound(emb[1:]) == pytest.approx(0.25, rel=0.1)


def test_supernet_init_keeps_the_given_embedding_and_rejects_unknown_names() -> None:
    glove = torch.randn(VOCAB, 8)
    for init in ("pytorch", "xavier"):
        supernet = TextNASSupernet(
            VOCAB,
            num_layers=2,
            k=2,
            options=TextNASOptions(**SMALL),
            embedding_init=glove,
            init=init,
        )
        assert torch.equal(supernet.embedding.weight, glove)
    with pytest.raises(ValueError, match=r"init must be one of pytorch, xavier, got 'kaiming'"):
        TextNASSupernet(VOCAB, num_layers=2, k=2, options=TextNASOptions(**SMALL), init="kaiming")
