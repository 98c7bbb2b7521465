"""ENAS controller for the TextNAS space, matching NNI's ``EnasMutator`` as TextNAS uses it.

NNI builds ``EnasMutator(model, temperature=None, tanh_constant=None,
entropy_reduction="mean")`` (``examples/nas/legacy/textnas/search.py``) over the mutables of
``Model`` (``examples/nas/legacy/textnas/model.py``).  This module re-implements that
controller as a plain ``nn.Module`` (no Lightning, no NNI) that emits
:class:`~search_spaces.text.architecture.Architecture` objects over the op set it was given
(``ops``: the space's op names, stored in ``OP_NAMES`` order as the supernet stores them), so
its samples run on the supernet as they are.

Decision order (NNI registration order; ``Layer`` is a ``MutableScope`` that creates
``prec``, ``op``, ``skipconnect`` in that order; layer 0 has no ``prec``/``skipconnect``)::

    layer 0:  op
    layer i:  input (1 of the previous min(i, k) layers), op, skip set (any of 0..i-1)

* **op** (``LayerChoice``): one LSTM step, ``logits = soft(h)``, optional ``/temperature``
  then ``tanh_constant * tanh``; sample; next LSTM input = ``embedding(op)``.
* **input** (``InputChoice``, ``n_chosen=1``): *no* LSTM step; score of candidate ``j`` is
  ``q_j = v_attn(tanh(attn_anchor(a_j) + attn_query(h)))`` (same optional temperature /
  tanh); sample from ``softmax(q)``; next input = the chosen anchor ``a_j``.
* **skip set** (``InputChoice``, ``n_chosen=None``): *no* LSTM step; same scores; logits
  ``[-q_j, q_j]`` per candidate; each candidate is drawn independently from
  ``softmax([-q_j, q_j])``, i.e. **P(skip_j) = sigmoid(2 q_j)**; next input
  ``(sum_j skip_j a_j) / (1 + sum_j skip_j)``.
* **anchor**: when a layer's scope ends the current ``h`` (the one after its op step) is
  stored as that layer's anchor ``a_i``.

Consequences of that order, faithfully reproduced:
every layer >= 1 starts with an input decision that overwrites the LSTM input, so the
op embedding and the skip average are never fed to the LSTM; the LSTM only ever consumes
``g_emb`` and chosen anchors.  ``g_emb`` is used through ``.data`` in NNI and therefore gets
no gradient (``learn_g_emb=False`` reproduces this).

Sign conventions (explicit, because NNI's names are misleading):

* NNI's ``sample_log_prob`` is a sum of cross-entropies, i.e. a *negative* log-likelihood.
  Here :attr:`ControllerSample.log_prob` is the (NNI-reduced) **log-likelihood** ``log p``
  (<= 0) and :attr:`ControllerSample.neg_log_prob` is NNI's ``sample_log_prob``.
* With ``entropy_reduction="mean"`` the per-candidate terms of a skip decision are
  *averaged* (``torch.mean`` over the candidates) before being added, both for the
  log-likelihood and for the entropy; op and input decisions contribute one term each.
  ``log_prob`` is therefore not the exact log-probability of the architecture unless
  ``entropy_reduction="sum"``.
* NNI's "entropy" of a decision is ``(-log p) * p`` of the *sampled* choice (detached),
  not the full entropy of the distribution; reproduced as is.
* Skip penalty: ``KL = sum sigmoid([-q, q]) * log(sigmoid([-q, q]) / [1 - t, t])`` summed
  over candidates and layers (ENAS-TF/NNI).  It pulls ``sigmoid(q)`` -- not the sampling
  probability ``sigmoid(2 q)`` -- toward ``t``; at the penalty's optimum the actual skip
  rate is ``sigmoid(2 logit(t))`` (~0.308 for t = 0.4, checked in the tests).
* REINFORCE (:func:`reinforce_step`): ``R = reward + entropy_weight * entropy``;
  ``b <- decay * b + (1 - decay) * R``; ``loss = neg_log_prob * (R - b) +
  skip_weight * skip_penalty``.  Minimising ``loss`` raises ``log p`` of samples with
  ``R > b``.

Randomness: every draw goes through ``torch.multinomial`` with the given
``torch.Generator`` on **CPU** probabilities (the probabilities are copied to CPU for the
draw), so a CPU generator works whatever device the controller lives on and equally seeded
generators give identical architectures on every rank.

Init (as NNI, which keeps PyTorch defaults): ``g_emb ~ N(0, 0.1^2)``; ``nn.LSTMCell``
U(-1/8, 1/8) for 64 units; ``nn.Linear`` Kaiming-uniform defaults; ``nn.Embedding`` N(0, 1).
Parameter names follow NNI's mutator (``lstm.lstm_modules.0.weight_ih``, ``soft``,
``embedding``, ``attn_anchor``, ``attn_query``, ``v_attn``, ``g_emb``, ``skip_targets``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from search_spaces.text.architecture import (
    OP_NAMES,
    STEM,
    Architecture,
    LayerSpec,
    canonical_op_set,
)

__all__ = ["StackedLSTMCell", "Decision", "ControllerSample", "EnasController", "reinforce_step"]


class StackedLSTMCell(nn.Module):
    """NNI's ``StackedLSTMCell``: ``layers`` LSTM cells, each feeding its ``h`` to the next."""

    def __init__(self, layers: int, size: int, bias: bool) -> None:
        super().__init__()
        self.lstm_num_layers = layers
        self.lstm_modules = nn.ModuleList(
            [nn.LSTMCell(size, size, bias=bias) for _ in range(layers)]
        )

    def forward(
        self, inputs: Tensor, hidden: tuple[list[Tensor], list[Tensor]]
    ) -> tuple[list[Tensor], list[Tensor]]:
        prev_h, prev_c = hidden
        next_h, next_c = [], []
        for i, cell in enumerate(self.lstm_modules):
            h, c = cell(inputs, (prev_h[i], prev_c[i]))
            next_h.append(h)
            next_c.append(c)
            inputs = h
        return next_h, next_c


@dataclass
class Decision:
    """One controller decision (diagnostics; everything detached).

    ``kind`` is ``"input"``, ``"op"`` or ``"skip"``.  ``candidates`` are absolute layer
    indices (input/skip) or op indices, i.e. positions in the controller's ``ops`` (op).
    ``probs``: categorical probabilities over the candidates (input/op) or the per-candidate
    probability that the skip is ON (``sigmoid(2 q)``). ``logits``: the (tempered) logits,
    ``(n, 2)`` ``[-q, q]`` rows for skips. ``chosen``: chosen candidate(s) (absolute layer / op
    indices)."""

    layer: int
    kind: str
    candidates: tuple[int, ...]
    probs: Tensor
    logits: Tensor
    chosen: tuple[int, ...]


@dataclass
class ControllerSample:
    """An architecture and its REINFORCE terms.

    ``log_prob``: NNI-reduced **log-likelihood** (``-`` NNI's ``sample_log_prob``), a
    differentiable scalar <= 0.  ``entropy``: NNI's detached sample entropy.
    ``skip_penalty``: differentiable KL skip penalty (summed over layers)."""

    architecture: Architecture
    log_prob: Tensor
    entropy: Tensor
    skip_penalty: Tensor
    decisions: list[Decision] = field(default_factory=list, repr=False)

    @property
    def neg_log_prob(self) -> Tensor:
        """NNI's ``sample_log_prob``: the summed cross-entropy ``-log p`` (>= 0)."""
        return -self.log_prob


class EnasController(nn.Module):
    """NNI ``EnasMutator`` for the TextNAS space (see the module docstring).

    ``ops`` is the space's op set (aliases accepted, any order); it is stored as
    :func:`~search_spaces.text.architecture.canonical_op_set` orders it, like the supernet's,
    and op choice ``j`` is ``self.ops[j]``, so sampled architectures use the space's names.
    Defaults are NNI's TextNAS configuration: all eight ops, ``lstm_size=64``, 1 LSTM layer,
    no bias, ``skip_target=0.4``, ``temperature=None``, ``tanh_constant=None``,
    ``entropy_reduction="mean"``.  ``branch_bias``: NNI adds it only to op choices whose key
    contains ``"reduce"`` (never in TextNAS), so the default 0 is NNI's behaviour; a
    non-zero value adds ``+branch_bias`` to conv ops and ``-branch_bias`` to the others at
    every layer.  ``learn_g_emb=False`` reproduces NNI's use of ``g_emb.data`` (no gradient
    to the start input).  The REINFORCE update is :func:`reinforce_step`."""

    def __init__(
        self,
        num_layers: int = 24,
        k: int = 5,
        ops: Sequence[str] = OP_NAMES,
        hidden: int = 64,
        skip_target: float = 0.4,
        temperature: float | None = None,
        tanh_constant: float | None = None,
        entropy_reduction: str = "mean",
        branch_bias: float = 0.0,
        lstm_num_layers: int = 1,
        learn_g_emb: bool = False,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not 0.0 < skip_target < 1.0:
            raise ValueError(f"skip_target must be in (0, 1), got {skip_target}")
        if entropy_reduction not in ("sum", "mean"):
            raise ValueError(
                f"entropy_reduction must be 'sum' or 'mean', got {entropy_reduction!r}"
            )
        self.num_layers = num_layers
        self.k = k
        self.ops = canonical_op_set(ops)
        num_ops = self.num_ops
        self.hidden = hidden
        self.skip_target = skip_target
        self.temperature = temperature
        self.tanh_constant = tanh_constant
        self.entropy_reduction = entropy_reduction
        self.branch_bias = branch_bias
        self.learn_g_emb = learn_g_emb

        self.lstm = StackedLSTMCell(lstm_num_layers, hidden, False)
        self.attn_anchor = nn.Linear(hidden, hidden, bias=False)
        self.attn_query = nn.Linear(hidden, hidden, bias=False)
        self.v_attn = nn.Linear(hidden, 1, bias=False)
        self.g_emb = nn.Parameter(torch.randn(1, hidden) * 0.1)
        self.register_buffer("skip_targets", torch.tensor([1.0 - skip_target, skip_target]))
        self.embedding = nn.Embedding(num_ops + 1, hidden)
        self.soft = nn.Linear(hidden, num_ops, bias=False)
        bias = [branch_bias if op.startswith("conv") else -branch_bias for op in self.ops]
        self.register_buffer("op_bias", torch.tensor(bias), persistent=False)

    @property
    def num_ops(self) -> int:
        return len(self.ops)

    # ------------------------------------------------------------------ helpers
    def _reduce(self, x: Tensor) -> Tensor:
        return x.mean() if self.entropy_reduction == "mean" else x.sum()

    def _temper(self, logits: Tensor) -> Tensor:
        if self.temperature is not None:
            logits = logits / self.temperature
        if self.tanh_constant is not None:
            logits = self.tanh_constant * torch.tanh(logits)
        return logits

    @staticmethod
    def _draw(probs: Tensor, generator: torch.Generator | None) -> Tensor:
        """One multinomial draw per row of ``probs`` (2-D), on CPU; returns CPU longs."""
        return torch.multinomial(probs.detach().cpu(), 1, generator=generator).view(-1)

    def _check(self, arch: Architecture) -> None:
        if arch.num_layers != self.num_layers:
            raise ValueError(
                f"architecture has {arch.num_layers} layers, controller has {self.num_layers}"
            )
        arch.validate(num_layers=self.num_layers, k=self.k)
        for i, spec in enumerate(arch.layers):
            if spec.op not in self.ops:
                raise ValueError(
                    f"layer {i}: op {spec.op!r} is not in the controller's op set "
                    f"({', '.join(self.ops)})"
                )

    # --------------------------------------------------------------------- core
    def _run(
        self,
        mode: str,
        architecture: Architecture | None = None,
        generator: torch.Generator | None = None,
    ) -> ControllerSample:
        """``mode``: ``"sample"``, ``"force"`` (teacher forcing ``architecture``) or
        ``"argmax"`` (most likely choice at each decision)."""
        if mode == "force":
            assert architecture is not None
            self._check(architecture)
        g = self.g_emb if self.learn_g_emb else self.g_emb.detach()
        dtype, device = g.dtype, g.device
        n_lstm = self.lstm.lstm_num_layers
        h = [torch.zeros(1, self.hidden, dtype=dtype, device=device) for _ in range(n_lstm)]
        c = [torch.zeros(1, self.hidden, dtype=dtype, device=device) for _ in range(n_lstm)]
        inputs = g
        anchors: list[Tensor] = []  # a_j, (1, hidden)
        anchors_w: list[Tensor] = []  # attn_anchor(a_j), cached
        zero = torch.zeros((), dtype=dtype, device=device)
        neg_log_prob, entropy, skip_penalty = zero, zero, zero
        decisions: list[Decision] = []
        layers: list[LayerSpec] = []

        def scores(cands: list[int]) -> Tensor:  # (n, 1)
            query = torch.cat([anchors_w[j] for j in cands], 0)
            query = torch.tanh(query + self.attn_query(h[-1]))
            return self._temper(self.v_attn(query))

        def choose_categorical(logit: Tensor, forced: int | None) -> Tensor:
            # logit: (1, n) -> chosen index, (1,) long on device
            if mode == "sample":
                idx = self._draw(F.softmax(logit, dim=-1), generator).to(device)
            elif mode == "argmax":
                idx = logit.argmax(dim=-1).view(-1)
            else:
                idx = torch.tensor([forced], device=device)
            return idx

        for i in range(self.num_layers):
            spec = architecture.layers[i] if mode == "force" else None
            inp = STEM
            # ---- input decision (no LSTM step)
            if i > 0:
                cands = list(range(max(0, i - self.k), i))
                logit = scores(cands).view(1, -1)
                forced = cands.index(spec.input) if spec is not None else None
                idx = choose_categorical(logit, forced)
                ce = F.cross_entropy(logit, idx, reduction="none")  # (1,)
                neg_log_prob = neg_log_prob + self._reduce(ce)
                entropy = entropy + self._reduce((ce * torch.exp(-ce)).detach())
                inp = cands[int(idx.item())]
                inputs = anchors[inp]
                decisions.append(
                    Decision(
                        i,
                        "input",
                        tuple(cands),
                        F.softmax(logit, -1).detach().view(-1),
                        logit.detach().view(-1),
                        (inp,),
                    )
                )
            # ---- op decision (one LSTM step)
            h, c = self.lstm(inputs, (h, c))
            logit = self._temper(self.soft(h[-1]))
            if self.branch_bias:
                logit = logit + self.op_bias.to(logit.dtype)
            idx = choose_categorical(logit, self.ops.index(spec.op) if spec is not None else None)
            ce = F.cross_entropy(logit, idx, reduction="none")
            neg_log_prob = neg_log_prob + self._reduce(ce)
            entropy = entropy + self._reduce((ce * torch.exp(-ce)).detach())
            op = int(idx.item())
            inputs = self.embedding(idx)
            decisions.append(
                Decision(
                    i,
                    "op",
                    tuple(range(self.num_ops)),
                    F.softmax(logit, -1).detach().view(-1),
                    logit.detach().view(-1),
                    (op,),
                )
            )
            # ---- skip set (no LSTM step)
            skips: tuple[int, ...] = ()
            if i > 0:
                cands = list(range(i))
                q = scores(cands)  # (i, 1)
                logit = torch.cat([-q, q], 1)  # (i, 2)
                probs = F.softmax(logit, dim=-1)
                if mode == "sample":
                    skip = self._draw(probs, generator).to(device)
                elif mode == "argmax":
                    skip = (q.view(-1) > 0).long()
                else:
                    skip = torch.tensor([1 if j in spec.skips else 0 for j in cands], device=device)
                skip_prob = torch.sigmoid(logit)
                kl = torch.sum(skip_prob * torch.log(skip_prob / self.skip_targets.to(dtype)))
                skip_penalty = skip_penalty + kl
                ce = F.cross_entropy(logit, skip, reduction="none")  # (i,)
                neg_log_prob = neg_log_prob + self._reduce(ce)
                entropy = entropy + self._reduce((ce * torch.exp(-ce)).detach())
                skipf = skip.to(dtype)
                inputs = (skipf @ torch.cat(anchors, 0) / (1.0 + skipf.sum())).unsqueeze(0)
                skips = tuple(j for j, s in zip(cands, skip.tolist()) if s)
                decisions.append(
                    Decision(i, "skip", tuple(cands), probs[:, 1].detach(), logit.detach(), skips)
                )
            # ---- scope end: anchor
            anchors.append(h[-1])
            anchors_w.append(self.attn_anchor(h[-1]))
            layers.append(LayerSpec(inp, self.ops[op], skips))

        arch = Architecture(tuple(layers), k=self.k, source=f"EnasController.{mode}")
        return ControllerSample(arch, -neg_log_prob, entropy, skip_penalty, decisions)

    # ------------------------------------------------------------------- public
    def sample(self, generator: torch.Generator | None = None) -> ControllerSample:
        """Sample an architecture (all randomness from ``generator``, a CPU generator;
        the global RNG when ``None``).  Wrap in ``torch.no_grad()`` when only the
        architecture is needed (NNI's child phase)."""
        return self._run("sample", generator=generator)

    def log_prob_of(self, architecture: Architecture) -> ControllerSample:
        """Teacher-forced log-likelihood, entropy and skip penalty of ``architecture``
        (differentiable).  Equal to :meth:`sample`'s values for a sampled architecture."""
        return self._run("force", architecture=architecture)

    def argmax(self) -> Architecture:
        """Greedy decoding: the most likely choice at every decision (skip ON iff its
        probability > 0.5, i.e. ``q > 0``).  Greedy, hence not necessarily the global mode
        over the input choices (ops and skips never condition later decisions in NNI's
        ordering, see the module docstring)."""
        with torch.no_grad():
            return self._run("argmax").architecture

    def forward(self, generator: torch.Generator | None = None) -> ControllerSample:
        return self.sample(generator)

    def extra_repr(self) -> str:
        return (
            f"num_layers={self.num_layers}, k={self.k}, ops={self.ops}, "
            f"skip_target={self.skip_target}, temperature={self.temperature}, "
            f"tanh_constant={self.tanh_constant}, entropy_reduction={self.entropy_reduction!r}"
        )


# ------------------------------------------------------------------------- REINFORCE


def reinforce_step(
    sample: ControllerSample,
    reward: float | Tensor,
    baseline: float,
    entropy_weight: float | None = 1e-4,
    baseline_decay: float = 0.99,
    skip_weight: float | None = 0.8,
) -> tuple[Tensor, float, float]:
    """One NNI ``EnasTrainer`` controller update.

    ``R = reward + entropy_weight * entropy`` (entropy detached; skipped when the weight is
    falsy), ``b_new = baseline_decay * baseline + (1 - baseline_decay) * R`` (start with
    ``baseline = 0``), ``loss = neg_log_prob * (R - b_new) + skip_weight * skip_penalty``
    where ``neg_log_prob = -sample.log_prob`` (NNI's ``sample_log_prob``).  Minimising
    ``loss`` increases the probability of samples with ``R > b_new``.  The updated baseline
    is used in the loss, as in NNI.

    Returns ``(loss, b_new, R)``; ``loss`` is a differentiable scalar (backward, clip the
    controller's gradient norm at 5.0 as NNI does, step Adam)."""
    r = float(reward.detach().item()) if isinstance(reward, Tensor) else float(reward)
    if entropy_weight:
        r += entropy_weight * float(sample.entropy.detach().item())
    new_baseline = baseline_decay * float(baseline) + (1.0 - baseline_decay) * r
    loss = sample.neg_log_prob * (r - new_baseline)
    if skip_weight:
        loss = loss + skip_weight * sample.skip_penalty
    return loss, new_baseline, r
