"""The TextNAS op vocabulary: the eight candidate ops, their aliases and canonical names.

Every file format (the project's YAML, NNI's JSON, the official ``fixed_arc`` string) and
every space definition (``supernet.ops=[...]``) names ops through :func:`canonical_op` and
:func:`canonical_op_set`, so ``"maxpool"``, ``"max_pool"`` and ``5`` are the same op.

Plain Python: no torch, no Lightning.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["OP_NAMES", "OP_ALIASES", "ArchitectureError", "canonical_op", "canonical_op_set"]

#: Candidate ops; the index is the NNI one-hot position and the official op id.
OP_NAMES: tuple[str, ...] = (
    "conv1",
    "conv3",
    "conv5",
    "conv7",
    "avg_pool",
    "max_pool",
    "rnn",
    "attention",
)


class ArchitectureError(ValueError):
    """An architecture that breaks the TextNAS rules, or a file that cannot be decoded."""


def _norm_key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.strip().lower())


def _build_aliases() -> dict[str, str]:
    aliases: dict[str, str] = {}
    for i, op in enumerate(OP_NAMES):
        aliases[_norm_key(op)] = op
        aliases[str(i)] = op  # NNI's LayerChoice names for an unnamed candidate list
    for size in (1, 3, 5, 7):
        op = f"conv{size}"
        for alias in (f"conv{size}x{size}", f"conv1d{size}", f"convk{size}", f"conv{size}x1"):
            aliases[alias] = op
    for alias in ("avgpool", "avgpool3", "averagepool", "averagepooling", "meanpool", "avgpooling"):
        aliases[alias] = "avg_pool"
    for alias in ("maxpool", "maxpool3", "maxpooling"):
        aliases[alias] = "max_pool"
    for alias in ("rnn", "gru", "bigru", "birnn", "recurrent", "bidirectionalgru"):
        aliases[alias] = "rnn"
    for alias in (
        "attention",
        "attn",
        "selfattention",
        "selfattn",
        "multiheadattention",
        "multiheadselfattention",
        "mha",
    ):
        aliases[alias] = "attention"
    return aliases


#: Normalised alias (lower case, no ``_``/``-``/spaces) -> canonical op name.
OP_ALIASES: dict[str, str] = _build_aliases()


def canonical_op(op: str | int) -> str:
    """Map an op name, alias (``"maxpool"``, ``"biGRU"``, ``"attn"``...) or index to its
    canonical name in :data:`OP_NAMES`.  Raises :class:`ArchitectureError` if unknown."""
    if isinstance(op, bool):
        raise ArchitectureError(f"unknown op {op!r} (valid: {', '.join(OP_NAMES)})")
    if isinstance(op, int):
        if 0 <= op < len(OP_NAMES):
            return OP_NAMES[op]
        raise ArchitectureError(
            f"unknown op id {op} (valid: 0..{len(OP_NAMES) - 1} = {', '.join(OP_NAMES)})"
        )
    if isinstance(op, str):
        found = OP_ALIASES.get(_norm_key(op))
        if found is not None:
            return found
    raise ArchitectureError(f"unknown op {op!r} (valid: {', '.join(OP_NAMES)})")


def canonical_op_set(ops: Sequence[str] | str) -> tuple[str, ...]:
    """Canonical names of ``ops`` (aliases accepted), in :data:`OP_NAMES` order, so that a
    space's op set (and the parameter names and op ids built from it) never depends on the
    order it was listed in.  An unknown name, a repeated op or an empty set raises
    :class:`ArchitectureError` (a ``ValueError``) listing the valid ops."""
    if isinstance(ops, str):
        ops = (ops,)
    names: list[str] = []
    for op in ops:
        try:
            name = canonical_op(op)
        except ArchitectureError:
            raise ArchitectureError(
                f"unknown op {op!r} in the op set; valid ops: {', '.join(OP_NAMES)}"
            ) from None
        if name in names:
            raise ArchitectureError(f"op {name!r} is listed twice in the op set {list(ops)}")
        names.append(name)
    if not names:
        raise ArchitectureError(f"the op set is empty; valid ops: {', '.join(OP_NAMES)}")
    return tuple(op for op in OP_NAMES if op in names)
