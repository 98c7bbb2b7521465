"""ENAS controller (NNI ``EnasMutator`` as configured for TextNAS)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from lightning_modules.textnas.controller import EnasController, reinforce_step
from search_spaces.text import TextNASOptions, TextNASSupernet
from search_spaces.text.architecture import OP_NAMES, STEM, Architecture, LayerSpec
from tests.helpers.textnas import op_probs, random_arch, skip_rate_at_penalty_optimum

TINY = dict(num_layers=4, k=2, ops=OP_NAMES[:3], hidden=4)


pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(seed: int = 0, **kwargs) -> EnasController:
    """Tiny controller in float64 with fixed, non-trivial weights."""
    torch.manual_seed(seed)
    ctrl = EnasController(**{**TINY, **kwargs}).double()
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for p in ctrl.parameters():
            p.copy_(torch.from_numpy(rng.uniform(-0.8, 0.8, size=tuple(p.shape))))
    return ctrl


# ----------------------------------------------------------------- numpy reference


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def _reference(ctrl: EnasController, arch: Architecture):
    """NNI's EnasMutator re-derived by hand: (log_lik, entropy, skip_penalty, op probs)."""
    w = {n: p.detach().numpy().astype(np.float64) for n, p in ctrl.named_parameters()}
    w_ih, w_hh = w["lstm.lstm_modules.0.weight_ih"], w["lstm.lstm_modules.0.weight_hh"]
    w_a, w_q, v = w["attn_anchor.weight"], w["attn_query.weight"], w["v_attn.weight"][0]
    soft, emb, g_emb = w["soft.weight"], w["embedding.weight"], w["g_emb"][0]
    hid = g_emb.shape[0]
    target = np.array([1 - ctrl.skip_target, ctrl.skip_target])
    red = np.mean if ctrl.entropy_reduction == "mean" else np.sum

    def temper(x):
        if ctrl.temperature is not None:
            x = x / ctrl.temperature
        if ctrl.tanh_constant is not None:
            x = ctrl.tanh_constant * np.tanh(x)
        return x

    def lstm(x, h, c):  # PyTorch gate order i, f, g, o; no bias
        z = w_ih @ x + w_hh @ h
        i, f, g, o = z[:hid], z[hid : 2 * hid], z[2 * hid : 3 * hid], z[3 * hid :]
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        return _sigmoid(o) * np.tanh(c), c

    def attn(cands, h):
        return np.array([temper(v @ np.tanh(w_a @ anchors[j] + w_q @ h)) for j in cands])

    h, c, x = np.zeros(hid), np.zeros(hid), g_emb
    anchors, log_lik, ent, kl, op_probs = [], 0.0, 0.0, 0.0, []
    for i, spec in enumerate(arch.layers):
        if i > 0:  # input choice: no LSTM step
            cands = list(range(max(0, i - ctrl.k), i))
            p = _softmax(attn(cands, h))[cands.index(spec.input)]
            log_lik += np.log(p)
            ent += -np.log(p) * p
            x = anchors[spec.input]
        h, c = lstm(x, h, c)  # op choice
        probs = _softmax(temper(soft @ h))
        op_probs.append(probs)
        op = ctrl.ops.index(spec.op)  # op choice j is ctrl.ops[j]
        p = probs[op]
        log_lik += np.log(p)
        ent += -np.log(p) * p
        x = emb[op]
        if i > 0:  # skip set: independent 2-way softmax over [-q, q] per candidate
            q = attn(range(i), h)
            on = np.array([j in spec.skips for j in range(i)])
            p_on = np.exp(q) / (np.exp(q) + np.exp(-q))
            p = np.where(on, p_on, 1 - p_on)
            log_lik += red(np.log(p))
            ent += red(-np.log(p) * p)
            sig = np.stack([_sigmoid(-q), _sigmoid(q)], 1)
            kl += np.sum(sig * np.log(sig / target))
            x = (on[:, None] * np.stack(anchors[:i])).sum(0) / (1 + on.sum())
        anchors.append(h)
    return log_lik, ent, kl, op_probs


FIXED = Architecture(
    (
        LayerSpec(STEM, "conv5"),
        LayerSpec(0, "conv3", (0,)),
        LayerSpec(0, "conv1", (1,)),
        LayerSpec(1, "conv5", (0, 2)),
    ),
    k=2,
)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"entropy_reduction": "sum"},
        {"temperature": 2.0, "tanh_constant": 1.5, "skip_target": 0.3},
    ],
)
def test_log_prob_entropy_penalty_match_numpy(kwargs):
    ctrl = _tiny(1, **kwargs)
    out = ctrl.log_prob_of(FIXED)
    log_lik, ent, kl, ref_op_probs = _reference(ctrl, FIXED)
    assert out.log_prob.item() == pytest.approx(log_lik, abs=1e-6)
    assert out.neg_log_prob.item() == pytest.approx(-log_lik, abs=1e-6)
    assert out.entropy.item() == pytest.approx(ent, abs=1e-6)
    assert out.skip_penalty.item() == pytest.approx(kl, abs=1e-6)
    for layer in range(FIXED.num_layers):
        np.testing.assert_allclose(op_probs(out, layer).numpy(), ref_op_probs[layer], atol=1e-9)
    assert out.log_prob.requires_grad and out.skip_penalty.requires_grad
    assert not out.entropy.requires_grad
    # decision order is NNI's: layer 0 op; then input, op, skip per layer
    kinds = [(d.layer, d.kind) for d in out.decisions]
    assert kinds[:4] == [(0, "op"), (1, "input"), (1, "op"), (1, "skip")]
    assert len(kinds) == 3 * FIXED.num_layers - 2


def test_sample_deterministic_valid_and_consistent():
    ctrl = _tiny(2)
    rng_state = torch.random.get_rng_state()
    archs = set()
    for seed in range(6):
        a = ctrl.sample(torch.Generator().manual_seed(seed))
        b = ctrl.sample(torch.Generator().manual_seed(seed))
        assert a.architecture == b.architecture
        assert a.log_prob.item() == b.log_prob.item()
        a.architecture.validate(num_layers=TINY["num_layers"], k=TINY["k"])
        forced = ctrl.log_prob_of(a.architecture)
        assert forced.log_prob.item() == pytest.approx(a.log_prob.item(), abs=1e-12)
        assert forced.entropy.item() == pytest.approx(a.entropy.item(), abs=1e-12)
        assert forced.skip_penalty.item() == pytest.approx(a.skip_penalty.item(), abs=1e-12)
        archs.add(a.architecture)
    assert len(archs) > 1
    # a generator leaves the global RNG alone
    assert torch.equal(rng_state, torch.random.get_rng_state())
    # full-size default controller too
    big = EnasController()
    s = big.sample(torch.Generator().manual_seed(3))
    assert s.architecture.num_layers == 24 and s.architecture.k == 5
    assert s.architecture == big.sample(torch.Generator().manual_seed(3)).architecture
    with pytest.raises(ValueError):
        ctrl.log_prob_of(random_arch(4, k=2, seed=0, ops=OP_NAMES[5:]))


def test_controller_emits_the_space_op_names():
    ops = ("attention", "conv3", "rnn")  # a subset, listed out of OP_NAMES order
    ctrl = _tiny(5, ops=ops)
    options = TextNASOptions(width=4, embed_dim=4)
    supernet = TextNASSupernet(20, num_layers=4, k=2, ops=ops, options=options)
    assert ctrl.ops == supernet.ops == ("conv3", "rnn", "attention") and ctrl.num_ops == 3
    gen = torch.Generator().manual_seed(0)
    samples = [ctrl.sample(gen) for _ in range(20)]
    archs = [s.architecture for s in samples] + [ctrl.argmax()]
    for arch in archs:
        assert supernet.validate_architecture(arch) is arch  # runs on the supernet as it is
    assert set().union(*({s.op for s in a.layers} for a in archs)) == set(ops)
    # op choice j is ops[j]: the same weights over the first three ops of OP_NAMES choose the
    # same positions from the same generator
    prefix = _tiny(5)
    gen = torch.Generator().manual_seed(0)
    for s in samples:
        other = prefix.sample(gen).architecture
        assert [ctrl.ops.index(x.op) for x in s.architecture.layers] == [
            prefix.ops.index(x.op) for x in other.layers
        ]
        assert [(x.input, x.skips) for x in s.architecture.layers] == [
            (x.input, x.skips) for x in other.layers
        ]
    # teacher forcing reads names the same way (the numpy reference indexes ctrl.ops)
    log_lik, _, _, ref_op_probs = _reference(ctrl, archs[0])
    forced = ctrl.log_prob_of(archs[0])
    assert forced.log_prob.item() == pytest.approx(log_lik, abs=1e-6)
    assert forced.log_prob.item() == pytest.approx(samples[0].log_prob.item(), abs=1e-12)
    np.testing.assert_allclose(op_probs(forced, 1).numpy(), ref_op_probs[1], atol=1e-9)
    with pytest.raises(ValueError, match="not in the controller's op set"):
        ctrl.log_prob_of(random_arch(4, k=2, seed=0, ops=("conv1",)))
    with pytest.raises(ValueError, match="unknown op 'conv9'"):
        EnasController(ops=("conv3", "conv9"))


def test_reinforce_step_formula():
    ctrl = _tiny(3)
    s = ctrl.sample(torch.Generator().manual_seed(0))
    loss, b, r = reinforce_step(
        s, 0.7, 0.2, entropy_weight=1e-2, baseline_decay=0.9, skip_weight=0.8
    )
    r_exp = 0.7 + 1e-2 * s.entropy.item()
    b_exp = 0.9 * 0.2 + 0.1 * r_exp
    assert r == pytest.approx(r_exp) and b == pytest.approx(b_exp)
    expected = -s.log_prob.item() * (r_exp - b_exp) + 0.8 * s.skip_penalty.item()
    assert loss.item() == pytest.approx(expected)


def test_reinforce_learns_rewarded_op():
    torch.manual_seed(0)
    ctrl = EnasController(num_layers=4, k=2)
    opt = torch.optim.Adam(ctrl.parameters(), lr=2e-3)  # NNI's mutator_lr
    gen = torch.Generator().manual_seed(0)
    target_layer, target_op = 2, 5
    p0 = op_probs(ctrl.log_prob_of(random_arch(4, k=2, seed=0)), target_layer)[target_op]
    baseline, steps = 0.0, 0
    for steps in range(1, 401):  # noqa: B007
        s = ctrl.sample(gen)
        reward = float(s.architecture.layers[target_layer].op_index == target_op)
        loss, baseline, _ = reinforce_step(s, reward, baseline)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ctrl.parameters(), 5.0)
        opt.step()
        if steps % 25 == 0:
            with torch.no_grad():
                probs = [
                    op_probs(ctrl.log_prob_of(ctrl.sample(gen).architecture), target_layer)[
                        target_op
                    ]
                    for _ in range(8)
                ]
            if min(probs) > 0.9:
                break
    assert p0 < 0.3
    assert min(probs) > 0.9, (steps, probs)


def test_skip_penalty_pulls_skip_rate_to_target():
    torch.manual_seed(0)
    ctrl = EnasController(num_layers=6, k=2, ops=OP_NAMES[:3])
    archs = [random_arch(6, k=2, seed=s, ops=OP_NAMES[:3]) for s in range(4)]

    def mean_sigmoid_q():
        with torch.no_grad():
            vals = [
                torch.sigmoid(d.logits[:, 1])
                for a in archs
                for d in ctrl.log_prob_of(a).decisions
                if d.kind == "skip"
            ]
        return torch.cat(vals).mean().item()

    before = mean_sigmoid_q()
    opt = torch.optim.Adam(ctrl.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    baseline = 0.0
    for _ in range(150):
        loss, baseline, _ = reinforce_step(ctrl.sample(gen), 0.0, baseline)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = mean_sigmoid_q()
    assert abs(after - 0.4) < 0.5 * abs(before - 0.4)
    assert abs(after - 0.4) < 0.01
    # the penalty acts on sigmoid(q); skips are drawn with sigmoid(2q) (NNI / ENAS-TF)
    with torch.no_grad():
        rate = np.mean(
            [len(s.skips) for _ in range(200) for s in ctrl.sample(gen).architecture.layers]
        ) / (sum(range(6)) / 6)
    assert rate == pytest.approx(skip_rate_at_penalty_optimum(0.4), abs=0.03)
    assert skip_rate_at_penalty_optimum(0.4) == pytest.approx(1 / (1 + (0.6 / 0.4) ** 2))


def _all_architectures(num_layers, k, num_ops):
    per_layer = []
    for i in range(num_layers):
        inputs = [STEM] if i == 0 else list(range(max(0, i - k), i))
        subsets = [
            tuple(j for j, b in enumerate(bits) if b)
            for bits in itertools.product((0, 1), repeat=i)
        ]
        per_layer.append(
            [LayerSpec(x, OP_NAMES[o], s) for x in inputs for o in range(num_ops) for s in subsets]
        )
    for layers in itertools.product(*per_layer):
        yield Architecture(layers, k=k)


def test_argmax_is_greedy_valid_and_likely():
    ctrl = _tiny(4, num_layers=3)
    best = ctrl.argmax()
    best.validate(num_layers=3, k=2)
    assert best == ctrl.argmax()
    scored = ctrl.log_prob_of(best)
    for d in scored.decisions:  # greedy: every decision takes its most likely option
        if d.kind == "skip":
            assert d.chosen == tuple(c for c, p in zip(d.candidates, d.probs) if p > 0.5)
        else:
            assert d.chosen == (d.candidates[int(d.probs.argmax())],)
    lp_best = scored.log_prob.item()
    with torch.no_grad():
        every = {a: ctrl.log_prob_of(a).log_prob.item() for a in _all_architectures(3, 2, 3)}
    assert len(every) == 3 * 6 * 24
    # the greedy choice beats every architecture with the same input choices ...
    same_inputs = [
        lp
        for a, lp in every.items()
        if [s.input for s in a.layers] == [s.input for s in best.layers]
    ]
    assert lp_best >= max(same_inputs) - 1e-12
    # ... and is, for this tiny configuration, the mode of the whole space
    assert lp_best >= max(every.values()) - 1e-12
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        sampled = [ctrl.sample(gen).log_prob.item() for _ in range(100)]
    assert lp_best >= max(sampled) - 1e-12
    # with entropy_reduction='sum' log_prob is exact: the space's probabilities sum to one
    # (with NNI's 'mean' the skip terms are averaged, so they are not probabilities)
    ctrl_sum = _tiny(4, num_layers=3, entropy_reduction="sum")
    with torch.no_grad():
        total = sum(math.exp(ctrl_sum.log_prob_of(a).log_prob.item()) for a in every)
    assert total == pytest.approx(1.0, abs=1e-9)
