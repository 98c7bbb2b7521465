"""Tests for the alphaGAN search space: ops, mixed edges, the supernet and the plain generator.

Parameter counts are the ones measured on the reference code (docs/alphagan.md);
the width-256 networks are only built, never run.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.gan import (
    ALPHA_SHAPES,
    EDGE_NAMES,
    NORMAL_OPS,
    UP_OPS,
    Generator,
    GeneratorSupernet,
    Genotype,
    GenotypeError,
    edge_ops,
    genotype_from_alphas,
    init_alphas,
    load_genotype,
)
from search_spaces.gan.cell import MixedNormal
from search_spaces.gan.genotype import ALPHA_ROWS
from search_spaces.gan.ops import Deconv


def count(params) -> int:
    return sum(p.numel() for p in params)


def tiny(
    fused: bool = True, bottom_width: int = 2, width: int = 8, seed: int = 0
) -> GeneratorSupernet:
    torch.manual_seed(seed)
    return GeneratorSupernet(latent_dim=16, width=width, bottom_width=bottom_width, fused=fused)


def random_genotype(seed: int, bottom_width: int = 2) -> Genotype:
    g = torch.Generator().manual_seed(seed)
    ops = {}
    for name in EDGE_NAMES:
        choices = NORMAL_OPS if ".normal" in name else UP_OPS
        ops[name] = choices[int(torch.randint(len(choices), (1,), generator=g))]
    return Genotype(ops, bottom_width)


# -- sizes --------------------------------------------------------------------------------------
def test_supernet_parameter_count_matches_reference():
    G = GeneratorSupernet(latent_dim=128, width=256, bottom_width=4)
    assert count(G.weights()) == 27_469_571
    assert count(G.alphas()) == 81 == 3 * (3 * 6) + 3 * (2 * 3) + 1 * 3 + 2 * 3
    assert count(G.parameters()) == 27_469_571 + 81
    # one ConvTranspose2d per up edge and per skip: the x4 skip holds a single one
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in G.modules()) == 3 * 2 + 1 + 2
    # the search SepConv BN has no affine parameters
    bns = [m for m in G.cells.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 3 * 3 * 3 * 2 and not any(bn.affine for bn in bns)


def test_unfused_supernet_has_the_same_parameters():
    a, b = tiny(fused=True), tiny(fused=False)
    assert [(n, p.shape) for n, p in a.named_parameters()] == [
        (n, p.shape) for n, p in b.named_parameters()
    ]


@pytest.mark.parametrize(
    ("name", "cifar", "stl"),
    [("alphagan_l", 8_618_499, 9_278_979), ("alphagan_s", 2_952_707, 3_613_187)],
)
def test_shipped_generators_match_reference_sizes(name, cifar, stl):
    g = load_genotype(name)
    assert count(Generator(g, latent_dim=128, width=256).parameters()) == cifar
    assert count(Generator(g.retarget(6), latent_dim=128, width=256).parameters()) == stl


# -- α ---------------------------------------------------------------------------------------------
def test_alphas_are_parameters_kept_apart_and_checkpointed():
    G = tiny()
    assert [tuple(a.shape) for a in G.alphas()] == list(ALPHA_SHAPES.values())
    alpha_ids = {id(a) for a in G.alphas()}
    assert not any(id(p) in alpha_ids for p in G.weights())
    assert {id(p) for p in G.weights()} | alpha_ids == {id(p) for p in G.parameters()}
    state = G.state_dict()
    assert all(f"alpha.{k}" in state for k in ALPHA_SHAPES)
    assert (
        1e-4 < float(torch.cat([a.detach().flatten() for a in G.alphas()]).std()) < 1e-2
    )  # 1e-3 * randn
    H = tiny(seed=1)
    H.load_state_dict(state)
    for a, b in zip(G.alphas(), H.alphas()):
        assert torch.equal(a, b)


def test_worst_case_copy_has_its_own_alphas():
    G = tiny()
    G_w = copy.deepcopy(G)
    for a in G_w.alphas():
        a.requires_grad_(False)
    G_w(torch.randn(4, 16)).mean().backward()
    assert all(a.grad is None for a in G_w.alphas())
    assert all(p.grad is not None for p in G_w.weights())
    assert all(a.grad is None for a in G.alphas())  # G untouched
    with torch.no_grad():
        G.alpha["up1"][0, 0] += 1.0
    assert not torch.equal(G.alpha["up1"], G_w.alpha["up1"])
    G_w.load_state_dict(G.state_dict())  # refresh each epoch: weights, BN buffers and α
    assert torch.equal(G.alpha["up1"], G_w.alpha["up1"]) and not G_w.alpha["up1"].requires_grad


def test_external_alphas_replace_the_module_alphas():
    G = tiny()
    z = torch.randn(4, 16)
    ext = init_alphas()
    ext.load_state_dict(G.alpha.state_dict())
    torch.manual_seed(3)
    out_own = G(z)
    torch.manual_seed(3)
    out_ext = G(z, alphas=ext)
    torch.testing.assert_close(out_own, out_ext)
    out_ext.sum().backward()
    assert all(a.grad is not None for a in ext.values()) and all(a.grad is None for a in G.alphas())
    with pytest.raises(GenotypeError, match="missing skip3"):
        G(z, alphas={k: v for k, v in ext.items() if k != "skip3"})


# -- fused edges ---------------------------------------------------------------------------------
@pytest.mark.parametrize("whole_supernet", [False, True])
def test_fused_equals_per_op_sum_in_outputs_and_gradients(whole_supernet):
    """float64, so only rounding separates them; the supernet case covers the up edges, the
    x4 skip and every α (named_parameters include α)."""
    torch.manual_seed(0)
    if whole_supernet:
        fused, plain = tiny(fused=True).double(), tiny(fused=False).double()
        with torch.no_grad():
            for a in fused.alphas():
                a.normal_()  # away from uniform, so a wrong weighting would show
        plain.load_state_dict(fused.state_dict())
        z = torch.randn(4, 16, dtype=torch.float64)
        out_f, out_p = fused(z), plain(z)
    else:
        fused = MixedNormal(6, fused=True).double()
        plain = copy.deepcopy(fused)
        plain.fused = False
        alpha = torch.randn(6, dtype=torch.float64, requires_grad=True)
        alpha2 = alpha.detach().clone().requires_grad_(True)
        x = torch.randn(3, 6, 5, 5, dtype=torch.float64)
        out_f = fused(x, torch.softmax(alpha, -1))
        out_p = plain(x, torch.softmax(alpha2, -1))
    torch.testing.assert_close(out_f, out_p, rtol=1e-10, atol=1e-12)
    g = torch.randn_like(out_f)
    (out_f * g).sum().backward()
    (out_p * g).sum().backward()
    for (name, pf), (_, pp) in zip(fused.named_parameters(), plain.named_parameters()):
        torch.testing.assert_close(pf.grad, pp.grad, rtol=1e-9, atol=1e-12, msg=name)
    if not whole_supernet:
        torch.testing.assert_close(alpha.grad, alpha2.grad, rtol=1e-9, atol=1e-12)


# -- structure -----------------------------------------------------------------------------------
def test_x4_skip_applies_one_deconv_twice():
    G = tiny()
    skip = G.cells[2].skip[0].ops[UP_OPS.index("deconv")]
    assert isinstance(skip, Deconv) and skip.times == 2
    assert count(skip.parameters()) == 8 * 8 * 4 + 8  # a single ConvTranspose2d
    G.fused = False
    calls = []
    skip.deconv.register_forward_hook(lambda m, i, o: calls.append(o.shape[-1]))
    G(torch.randn(2, 16))
    assert calls == [8, 16]  # cell 1's node1 is 4x4 (bw 2): 4 -> 8 -> 16, the same module
    x, s = torch.randn(2, 8, 4, 4), torch.tensor(0.3)
    w, b = skip.deconv.weight, skip.deconv.bias
    twice = F.conv_transpose2d(F.conv_transpose2d(x, w, b, stride=2), w, b, stride=2)
    torch.testing.assert_close(skip(x), twice)
    torch.testing.assert_close(skip(x, s), s * twice)  # the fused edge's folded weight
    g = load_genotype("alphagan_s").retarget(2)  # cell3.skip0 = deconv (x4)
    net = Generator(g, latent_dim=16, width=8)
    assert net.cells[2].skip[0].times == 2
    assert count(net.cells[2].skip[0].parameters()) == 8 * 8 * 4 + 8


@pytest.mark.parametrize("bottom_width", [4, 6])
def test_output_shapes_and_range(bottom_width):
    G = tiny(bottom_width=bottom_width, width=4)
    z = torch.randn(2, 16)
    size = 8 * bottom_width
    for out in (G(z), G(z, genotype=G.genotype())):
        assert out.shape == (2, 3, size, size) and out.abs().max() <= 1
    net = Generator(random_genotype(1, bottom_width), latent_dim=16, width=4)
    out = net(z)
    assert out.shape == (2, 3, size, size) and out.abs().max() <= 1 and net.image_size == size


def test_genotype_is_argmax_per_edge():
    G = tiny()
    with torch.no_grad():
        for a in G.alphas():
            a.zero_()
        G.alpha["normal2"][1, NORMAL_OPS.index("sep_conv_7x7")] = 0.5
        G.alpha["up3"][0, UP_OPS.index("bilinear")] = 0.1
        G.alpha["skip3"][0, UP_OPS.index("nearest")] = 0.2
        G.alpha["skip3"][1, UP_OPS.index("deconv")] = -0.2  # ties keep the first op
    g = G.genotype()
    expected = {name: (NORMAL_OPS if ".normal" in name else UP_OPS)[0] for name in EDGE_NAMES}
    expected.update(
        {
            "cell2.normal1": "sep_conv_7x7",
            "cell3.up0": "bilinear",
            "cell3.skip0": "nearest",
            "cell3.skip1": "nearest",
        }
    )
    assert g.edges == expected and g.bottom_width == 2
    assert genotype_from_alphas(G.alpha, 2) == g
    weights = G.edge_weights()
    assert list(weights) == list(EDGE_NAMES)
    assert all(
        torch.allclose(w.sum(), torch.tensor(1.0)) and not w.requires_grad for w in weights.values()
    )
    assert int(weights["cell2.normal1"].argmax()) == NORMAL_OPS.index("sep_conv_7x7")


def test_discrete_path_runs_the_chosen_ops_only():
    G = tiny().double()
    g = random_genotype(5)
    # α put (almost) all weight on the genotype's ops: the continuous net equals the discrete path
    with torch.no_grad():
        for name in EDGE_NAMES:
            key, row = ALPHA_ROWS[name]
            G.alpha[key][row] = -1e3
            G.alpha[key][row, edge_ops(name).index(g.edges[name])] = 0.0
    z = torch.randn(3, 16, dtype=torch.float64)
    torch.testing.assert_close(G(z), G(z, genotype=g), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(
        G(z, genotype=g), G(z, genotype=g, scale_by_alpha=False), rtol=1e-9, atol=1e-9
    )
    # unchosen ops take no part: their weights get no gradient
    G.zero_grad()
    G(z, genotype=g, scale_by_alpha=False).sum().backward()
    for c, cell in enumerate(G.cells, start=1):
        for j, op in enumerate(cell.normal[0].ops):
            used = NORMAL_OPS[j] == g.normal(c)[0]
            assert all((p.grad is not None) == used for p in op.parameters())
    assert all(a.grad is None for a in G.alphas())
    with pytest.raises(GenotypeError, match="bottom_width 4"):
        G(z, genotype=g.retarget(4))


def test_generator_equals_the_supernet_discrete_path_with_the_same_weights():
    G = tiny()
    g = random_genotype(7)
    net = Generator(g, latent_dim=16, width=8)
    net.stem.load_state_dict(G.stem.state_dict())
    net.to_rgb.load_state_dict(G.to_rgb.state_dict())
    for c in range(3):
        for kind, ops in (("up", UP_OPS), ("normal", NORMAL_OPS), ("skip", UP_OPS)):
            for j, mod in enumerate(getattr(net.cells[c], kind)):
                chosen = getattr(net.genotype, kind if kind != "skip" else "skips")(c + 1)[j]
                src = getattr(G.cells[c], kind)[j].ops[ops.index(chosen)]
                missing, unexpected = mod.load_state_dict(src.state_dict(), strict=False)
                assert not unexpected and all(
                    k.endswith(("weight", "bias")) for k in missing
                )  # BN affine
    z = torch.randn(4, 16)
    torch.testing.assert_close(net(z), G(z, genotype=g, scale_by_alpha=False), rtol=1e-5, atol=1e-6)


def test_generator_refuses_another_bottom_width():
    g = load_genotype("alphagan_l")
    with pytest.raises(
        GenotypeError,
        match=r"bottom_width 4 \(32x32.*needs bottom_width 6 \(48x48\).*retarget\(6\)",
    ):
        Generator(g, latent_dim=16, width=4, bottom_width=6)
    assert Generator(g, latent_dim=16, width=4, bottom_width=4).bottom_width == 4


def test_channels_last_and_fused_switch_keep_the_maths():
    G = tiny()
    H = GeneratorSupernet(latent_dim=16, width=8, bottom_width=2, channels_last=True)
    H.load_state_dict(G.state_dict())
    assert H.cells[2].normal[0].ops[2].conv.weight.is_contiguous(memory_format=torch.channels_last)
    z = torch.randn(4, 16)
    out = H(z)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, G(z), rtol=1e-4, atol=1e-5)
    assert H.channels_last and not G.channels_last
    G2 = copy.deepcopy(G).to(memory_format=torch.channels_last)  # converted after building
    assert G2.channels_last and G2(z).is_contiguous(memory_format=torch.channels_last)
    H.fused = False
    assert not H.fused and not any(m.fused for m in H.cells[0].up)
    torch.testing.assert_close(H(z), G(z), rtol=1e-4, atol=1e-5)
    g = load_genotype("alphagan_s").retarget(2)
    a, b = Generator(g, 16, 8), Generator(g, 16, 8, channels_last=True)
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(b(z), a(z), rtol=1e-4, atol=1e-5)
