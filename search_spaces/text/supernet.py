"""The weight-sharing TextNAS supernet (docs/textnas.md, "The search").

Same structure as the fixed network (:mod:`search_spaces.text.network`), except that every layer
holds *all* ops of the op set and ``forward`` is told which architecture to run::

    embedding, embed_dropout, stem                  as TextNASEncoder
    layers.<i>.ops.<op name>.*                      every candidate op of layer i
    layers.<i>.bn.*                                 the post-sum BatchNorm of layer i
    combine.weight                                  LinearCombine over all layers
    dropout, head.*                                 as TextNASClassifier

Parameter names depend only on the layer index and the op *name* (the op set is stored in
:data:`OP_NAMES` order whatever order it was given in), never on construction order or on the
sampled architecture, so the key-counter problem of NNI's legacy mutables (NNI issue #2726)
cannot happen. :meth:`TextNASSupernet.forward` computes only the selected input, op and skips,
with exactly the arithmetic of the fixed network; :meth:`TextNASSupernet.fixed_state_dict` maps
the shared weights to the parameter names of ``TextNASClassifier(TextNASEncoder(arch, ...))``
so a retrain can start from inherited weights.

BatchNorm statistics are shared by all sampled architectures, as in NNI (docs/textnas.md); an op's
BatchNorm running statistics move only in steps where that op is selected. With
``post_bn="with_skips"`` (official code) a layer that gets no skip has no post-sum BN: the
supernet still owns ``layers.<i>.bn`` but does not apply it for that architecture.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .architecture import OP_NAMES, STEM, Architecture, ArchitectureError, LayerSpec
from .network import (
    LinearCombine,
    TextNASClassifier,
    TextNASEncoder,
    TextNASOptions,
    add_skips,
    float_mask,
    masked_pool,
    reset_parameters,
)
from .ops import ConvBN, Dropout, MaskedBatchNorm1d, apply_mask, build_op
from .strategies import canonical_op_set, check_space

__all__ = ["INITS", "SupernetLayer", "TextNASSupernet"]

#: Initialisations of the shared weights (``TextNASSupernet(init=...)``).
INITS = ("pytorch", "xavier")


class SupernetLayer(nn.Module):
    """All candidate ops of one layer (keyed by op name) and the post-sum BatchNorm."""

    def __init__(self, ops: Sequence[str], options: TextNASOptions):
        super().__init__()
        kwargs = options.op_kwargs()
        self.ops = nn.ModuleDict({name: build_op(name, options.width, **kwargs) for name in ops})
        self.bn = MaskedBatchNorm1d(options.width, masked=options.masked_bn)

    def forward(
        self,
        x: torch.Tensor,
        previous: list[torch.Tensor],
        mask: torch.Tensor | None,
        op: str,
        skips: Sequence[int],
        use_bn: bool,
    ) -> torch.Tensor:
        # Exactly FixedLayer.forward with the op picked by name.
        out = add_skips(self.ops[op](x, mask), previous, skips)
        if use_bn:
            out = self.bn(out, mask)
        return apply_mask(out, mask)


class TextNASSupernet(nn.Module):
    """Weight-sharing supernet + classification head; ``forward(ids, mask, architecture)``.

    ``num_classes=1`` is a regression head; ``pair=True`` encodes two sentences with the same
    weights and classifies ``[u, v, |u - v|, u * v]`` (as :class:`TextNASClassifier`). The head
    dropout keeps ``options.final_keep``.

    ``init``: ``"pytorch"`` (default) keeps PyTorch's default initialisation of the shared
    Conv1d/Linear/GRU weights and the head, as NNI's search model does (its ``Model`` never
    re-initialises); ``"xavier"`` applies the retrain network's Xavier-uniform init to every
    Conv1d and Linear (the head too). Either way the embedding is GloVe (``embedding_init``) or
    U[-0.25, 0.25) with a zero ``<pad>`` row, and BatchNorm starts at weight 1, bias 0.
    """

    def __init__(
        self,
        vocab_size: int,
        num_layers: int = 24,
        k: int = 5,
        ops: Sequence[str] = OP_NAMES,
        options: TextNASOptions | None = None,
        embedding_init: torch.Tensor | None = None,
        num_classes: int = 5,
        pair: bool = False,
        init: str = "pytorch",
    ):
        super().__init__()
        check_space(num_layers, k)
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
        self.init = init
        options = options or TextNASOptions()
        self.num_layers = num_layers
        self.k = k
        self.ops = canonical_op_set(ops)
        self.options = options
        self.vocab_size = vocab_size
        self.num_classes = num_classes
        self.pair = pair

        self.embedding = nn.Embedding(vocab_size, options.embed_dim)
        self.embed_dropout = Dropout(1.0 - options.embed_keep)
        self.stem = ConvBN(
            options.embed_dim,
            options.width,
            1,
            dropout=1.0 - options.cnn_keep,
            masked_bn=options.masked_bn,
        )
        self.layers = nn.ModuleList(SupernetLayer(self.ops, options) for _ in range(num_layers))
        self.combine = LinearCombine(num_layers)
        self.dropout = Dropout(1.0 - options.final_keep)
        width = options.width
        self.head = nn.Linear(4 * width if pair else width, num_classes)
        if init == "xavier":  # the retrain network's init: Xavier on every Conv1d/Linear
            reset_parameters(self, embedding_init)
        else:  # NNI's search: PyTorch's default init, only the embedding as in the retrain
            reset_parameters(self.embedding, embedding_init)
        self._last_valid: Architecture | None = None

    @property
    def out_features(self) -> int:
        return self.options.width

    # ----------------------------------------------------------------- architectures
    def validate_architecture(self, architecture: Architecture) -> Architecture:
        """Raise :class:`ArchitectureError` (a ``ValueError``) naming what does not match this
        supernet (layer count, k, an op outside the op set); return the architecture."""
        if architecture is self._last_valid:
            return architecture
        if not isinstance(architecture, Architecture):
            raise ArchitectureError(f"expected an Architecture, got {type(architecture).__name__}")
        if architecture.num_layers != self.num_layers:
            raise ArchitectureError(
                f"architecture has {architecture.num_layers} layers, the supernet {self.num_layers}"
            )
        if architecture.k != self.k:
            raise ArchitectureError(
                f"architecture has k={architecture.k} (input among the previous k layers), "
                f"the supernet k={self.k}"
            )
        for i, spec in enumerate(architecture.layers):
            if spec.op not in self.ops:
                raise ArchitectureError(
                    f"layer {i}: op {spec.op!r} is not in this supernet's op set "
                    f"({', '.join(self.ops)})"
                )
        architecture.validate(num_layers=self.num_layers, k=self.k)
        self._last_valid = architecture
        return architecture

    def _uses_bn(self, spec: LayerSpec) -> bool:
        return self.options.post_bn == "always" or len(spec.skips) > 0

    # ----------------------------------------------------------------------- forward
    def encode(
        self, ids: torch.Tensor, mask: torch.Tensor, architecture: Architecture
    ) -> torch.Tensor:
        """(B, L) ids and mask -> pooled sentence vector (B, C); TextNASEncoder.forward."""
        self.validate_architecture(architecture)
        x = self.embed_dropout(self.embedding(ids)).transpose(1, 2)  # (B, E, L)
        fmask = float_mask(mask, x.dtype)
        x = self.stem(x, fmask)
        outputs: list[torch.Tensor] = []
        for layer, spec in zip(self.layers, architecture.layers):
            inp = x if spec.input == STEM else outputs[spec.input]
            outputs.append(layer(inp, outputs, fmask, spec.op, spec.skips, self._uses_bn(spec)))
        return masked_pool(self.combine(outputs), fmask, self.options.pool)

    def forward(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        architecture: Architecture,
        ids_b: torch.Tensor | None = None,
        mask_b: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, num_classes) of ``architecture``; TextNASClassifier.forward."""
        u = self.encode(ids, mask, architecture)
        if self.pair:
            if ids_b is None or mask_b is None:
                raise ValueError("a sentence-pair supernet needs ids_b and mask_b")
            v = self.encode(ids_b, mask_b, architecture)
            u = torch.cat([u, v, (u - v).abs(), u * v], dim=1)
        return self.head(self.dropout(u))

    # ------------------------------------------------------------ weight inheritance
    def fixed_encoder_state_dict(self, architecture: Architecture) -> dict[str, torch.Tensor]:
        """The shared weights and buffers of ``architecture`` under the names of
        ``TextNASEncoder(architecture, ...)``'s ``state_dict()`` (no head).

        Like ``state_dict()``, the tensors are detached and share storage with the supernet;
        ``load_state_dict`` copies them.
        """
        self.validate_architecture(architecture)
        out: dict[str, torch.Tensor] = {}
        out.update(self.embedding.state_dict(prefix="embedding."))
        out.update(self.stem.state_dict(prefix="stem."))
        for i, (layer, spec) in enumerate(zip(self.layers, architecture.layers)):
            out.update(layer.ops[spec.op].state_dict(prefix=f"layers.{i}.op."))
            if self._uses_bn(spec):
                out.update(layer.bn.state_dict(prefix=f"layers.{i}.bn."))
        out.update(self.combine.state_dict(prefix="combine."))
        return out

    def fixed_state_dict(self, architecture: Architecture) -> dict[str, torch.Tensor]:
        """The weights of ``architecture`` under the names of the fixed
        ``TextNASClassifier(TextNASEncoder(architecture, ...), num_classes, pair)``:
        ``layers.i.ops.<op>.*`` -> ``encoder.layers.i.op.*``, ``layers.i.bn.*`` ->
        ``encoder.layers.i.bn.*`` (dropped when that layer has no post-sum BN), ``head.*`` ->
        ``head.*``, everything else -> ``encoder.*``. Load with ``strict=True``; to start a
        retrain with another head, load :meth:`fixed_encoder_state_dict` into ``.encoder``.
        """
        out = {
            f"encoder.{key}": value
            for key, value in self.fixed_encoder_state_dict(architecture).items()
        }
        out.update(self.head.state_dict(prefix="head."))
        return out

    def fixed_model(self, architecture: Architecture) -> TextNASClassifier:
        """A fixed ``TextNASClassifier`` of ``architecture`` (same options, head, device and
        dtype) holding copies of the shared weights, in the supernet's train/eval mode."""
        self.validate_architecture(architecture)
        encoder = TextNASEncoder(architecture, self.vocab_size, self.options)
        model = TextNASClassifier(
            encoder, self.num_classes, pair=self.pair, final_keep=self.options.final_keep
        )
        ref = self.head.weight
        model.to(device=ref.device, dtype=ref.dtype)
        model.load_state_dict(self.fixed_state_dict(architecture))
        return model.train(self.training)
