"""Test oracle: the reference's self-attention arithmetic written out step by step."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from search_spaces.text.ops import ATTENTION_MASK_VALUE, SelfAttention


def reference_attention(x: torch.Tensor, mask: torch.Tensor, op: SelfAttention) -> torch.Tensor:
    """What :class:`SelfAttention` computes in eval mode (no dropout), the reference's way:
    batch-first Linear projections, scores QK^T / sqrt(C/4), padded keys set to -2^32+1,
    softmax, rows times the query mask, heads concatenated, mask, BatchNorm, mask."""
    b, c, length = x.shape
    h = op.num_heads
    seq = x.transpose(1, 2)
    q, k, v = (F.relu(lin(seq)) for lin in (op.query, op.key, op.value))

    def heads(t: torch.Tensor) -> torch.Tensor:
        return t.view(b, length, h, c // h).transpose(1, 2)

    q, k, v = heads(q), heads(k), heads(v)
    scores = q @ k.transpose(-1, -2) / math.sqrt(c // h)
    key_mask = mask[:, None, :, :] > 0  # (B, 1, 1, L)
    scores = scores.masked_fill(~key_mask, ATTENTION_MASK_VALUE)
    probs = scores.softmax(-1) * mask[:, None, 0, :, None]  # zero padded query rows
    out = (probs @ v).transpose(1, 2).reshape(b, length, c).transpose(1, 2)
    out = out * mask
    return op.bn(out, mask) * mask
