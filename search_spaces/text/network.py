"""The fixed TextNAS network: one architecture, only its chosen ops (docs/textnas.md).

    ids, mask -> embedding (300) -> dropout -> stem ConvBN 1x1 (300 -> C)
              -> 24 layers: op(input) + sum(skips) -> BatchNorm -> mask
              -> softmax-weighted sum of all layer outputs -> masked mean over time -> (B, C)

:class:`TextNASEncoder` stops at the pooled sentence vector; :class:`TextNASClassifier` adds the
head, and for sentence-pair tasks encodes both sentences with the same encoder and classifies
``[u, v, |u - v|, u * v]`` (the paper's pair design is unknown; this is the suite's choice).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .architecture import STEM, Architecture
from .ops import ConvBN, MaskedBatchNorm1d, apply_mask, build_op


@dataclass
class TextNASOptions:
    """Everything about the network that is not the architecture (also the config schema of
    the ``model``/``supernet`` sections, so each default is written only here).

    Dropout is given as *keep* probabilities, as in the reference code (NNI ``model.py``): 0.8 for
    retraining and the official search, 0.5 for NNI's search, 1.0 before the head.
    """

    width: int = 256
    embed_dim: int = 300
    embed_keep: float = 0.8
    cnn_keep: float = 0.8
    rnn_keep: float = 0.8
    attention_keep: float = 0.8
    final_keep: float = 1.0
    post_bn: str = "always"  # "always" (NNI) or "with_skips" (official code)
    masked_bn: bool = False  # reference: BatchNorm statistics include padding
    maxpool_ignores_padding: bool = False  # reference: max pool sees padding zeros
    pool: str = "mean"  # masked "mean" (reference) or masked "max" (the fixed GlobalMaxPool)

    def __post_init__(self) -> None:
        if self.post_bn not in ("always", "with_skips"):
            raise ValueError(f"post_bn must be 'always' or 'with_skips', got {self.post_bn!r}")
        if self.pool not in ("mean", "max"):
            raise ValueError(f"pool must be 'mean' or 'max', got {self.pool!r}")
        for name in ("embed_keep", "cnn_keep", "rnn_keep", "attention_keep", "final_keep"):
            keep = getattr(self, name)
            if not 0.0 < keep <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {keep}")

    def op_kwargs(self) -> dict:
        return dict(
            cnn_dropout=1.0 - self.cnn_keep,
            rnn_dropout=1.0 - self.rnn_keep,
            attention_dropout=1.0 - self.attention_keep,
            masked_bn=self.masked_bn,
            maxpool_ignores_padding=self.maxpool_ignores_padding,
        )


def float_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
    """(B, L) bool mask -> (B, 1, L) float mask, or None when nothing is padded."""
    if bool(mask.all()):
        return None
    return mask[:, None, :].to(dtype)


def masked_pool(x: torch.Tensor, mask: torch.Tensor | None, mode: str = "mean") -> torch.Tensor:
    """Pool (B, C, L) over time using only real tokens -> (B, C)."""
    if mode == "max":
        if mask is not None:
            x = x.masked_fill(mask == 0, float("-inf"))
        return x.amax(dim=2)
    if mask is None:
        return x.mean(dim=2)
    return x.sum(dim=2) / mask.sum(dim=2)


class LinearCombine(nn.Module):
    """x = sum_l softmax(w)_l * h_l over all layer outputs, w initialised to 1/num_layers."""

    def __init__(self, num_layers: int):
        super().__init__()
        self.weight = nn.Parameter(torch.full((num_layers,), 1.0 / num_layers))

    def forward(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        w = self.weight.softmax(0).to(outputs[0].dtype)
        # A running sum: stacking 24 activations first costs a large copy (forward and backward).
        out = outputs[0] * w[0]
        for i in range(1, len(outputs)):
            out = out + outputs[i] * w[i]
        return out


def add_skips(out: torch.Tensor, previous: list[torch.Tensor], skips) -> torch.Tensor:
    """``out + sum(previous[j] for j in skips)`` with one new tensor instead of one per skip.

    The first addition allocates (``out`` itself may be saved for the op's backward, or be the
    op's input), the others accumulate into it in place, which autograd allows because an
    addition saves nothing for its backward. On CPU each avoided allocation is a fresh 2 MB
    buffer at C=256 (page faults and cache misses), and layers have about six skips.
    """
    if not skips:
        return out
    out = out + previous[skips[0]]
    for j in skips[1:]:
        out.add_(previous[j])
    return out


class FixedLayer(nn.Module):
    """One layer of a fixed architecture: its chosen op, its skips, the post-sum BatchNorm."""

    def __init__(self, spec, options: TextNASOptions):
        super().__init__()
        self.input = spec.input
        self.skips = tuple(spec.skips)
        self.op = build_op(spec.op, options.width, **options.op_kwargs())
        use_bn = options.post_bn == "always" or len(self.skips) > 0
        self.bn = MaskedBatchNorm1d(options.width, masked=options.masked_bn) if use_bn else None

    def forward(
        self, x: torch.Tensor, previous: list[torch.Tensor], mask: torch.Tensor | None
    ) -> torch.Tensor:
        out = add_skips(self.op(x, mask), previous, self.skips)
        if self.bn is not None:
            out = self.bn(out, mask)
        return apply_mask(out, mask)


class TextNASEncoder(nn.Module):
    """Token ids and mask -> pooled sentence vector (B, C) through a fixed architecture."""

    def __init__(
        self,
        architecture: Architecture,
        vocab_size: int,
        options: TextNASOptions | None = None,
        embedding_init: torch.Tensor | None = None,
    ):
        super().__init__()
        options = options or TextNASOptions()
        architecture.validate()
        self.architecture = architecture
        self.options = options
        self.embedding = nn.Embedding(vocab_size, options.embed_dim)
        self.embed_dropout = nn.Dropout(1.0 - options.embed_keep)
        self.stem = ConvBN(
            options.embed_dim,
            options.width,
            1,
            dropout=1.0 - options.cnn_keep,
            masked_bn=options.masked_bn,
        )
        self.layers = nn.ModuleList(FixedLayer(spec, options) for spec in architecture.layers)
        self.combine = LinearCombine(len(self.layers))
        reset_parameters(self, embedding_init)

    @property
    def out_features(self) -> int:
        return self.options.width

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.embed_dropout(self.embedding(ids)).transpose(1, 2)  # (B, E, L)
        fmask = float_mask(mask, x.dtype)
        x = self.stem(x, fmask)
        outputs: list[torch.Tensor] = []
        for layer in self.layers:
            inp = x if layer.input == STEM else outputs[layer.input]
            outputs.append(layer(inp, outputs, fmask))
        return masked_pool(self.combine(outputs), fmask, self.options.pool)


class TextNASClassifier(nn.Module):
    """Encoder + head. ``num_classes=1`` is a regression head (STS-B)."""

    def __init__(
        self, encoder: nn.Module, num_classes: int, pair: bool = False, final_keep: float = 1.0
    ):
        super().__init__()
        self.encoder = encoder
        self.pair = pair
        width = encoder.out_features
        self.dropout = nn.Dropout(1.0 - final_keep)
        self.head = nn.Linear(4 * width if pair else width, num_classes)
        nn.init.xavier_uniform_(self.head.weight)

    def forward(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        ids_b: torch.Tensor | None = None,
        mask_b: torch.Tensor | None = None,
    ) -> torch.Tensor:
        u = self.encoder(ids, mask)
        if self.pair:
            if ids_b is None or mask_b is None:
                raise ValueError("a sentence-pair classifier needs ids_b and mask_b")
            v = self.encoder(ids_b, mask_b)
            u = torch.cat([u, v, (u - v).abs(), u * v], dim=1)
        return self.head(self.dropout(u))


def reset_parameters(module: nn.Module, embedding_init: torch.Tensor | None = None) -> None:
    """Reference initialisation: Xavier-uniform Conv1d and Linear weights, U[-0.25, 0.25)
    embedding with a zero padding row (or the given GloVe matrix), the rest PyTorch defaults."""
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
        elif isinstance(m, nn.Embedding):
            if embedding_init is not None:
                if tuple(embedding_init.shape) != tuple(m.weight.shape):
                    raise ValueError(
                        f"embedding_init has shape {tuple(embedding_init.shape)}, "
                        f"expected {tuple(m.weight.shape)}"
                    )
                with torch.no_grad():
                    m.weight.copy_(embedding_init)
            else:
                nn.init.uniform_(m.weight, -0.25, 0.25)
                with torch.no_grad():
                    m.weight[0].zero_()


def count_parameters(module: nn.Module, exclude_embedding: bool = True) -> int:
    """Number of parameters, without the word embedding by default (as docs/textnas.md counts)."""
    return sum(
        p.numel()
        for name, p in module.named_parameters()
        if not (exclude_embedding and name.split(".")[-2:-1] == ["embedding"])
    )
