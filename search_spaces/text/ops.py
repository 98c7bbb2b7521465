"""The eight TextNAS candidate operations (NNI ``ops.py`` = the official ``child_model/ops.py``).

Every op maps ``x`` of shape (B, C, L) (channels first, as in NNI and the official code) and a
padding mask to a tensor of the same shape. The mask is passed as a float tensor of shape
(B, 1, L) with 1 at real tokens, or ``None`` when the batch has no padding at all; skipping the
mask multiplications (and GRU packing) in that case is what makes unpadded batches fast.

Two reference behaviours are switchable (docs/textnas.md, "Quirks of the reference code"):

* ``masked_bn``: the reference BatchNorm computes its statistics over all (B, L) positions,
  zero padding included (docs/textnas.md, "Quirks of the reference code"). ``True`` computes
  them over real tokens only.
* ``maxpool_ignores_padding``: the reference max pool sees the zero-filled padding, so the last
  real token's output depends on whether padding follows it. ``True`` pools over real tokens only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from . import cpu_kernels
from .architecture import OP_NAMES

# The reference fills padded attention keys with this value before the softmax.
ATTENTION_MASK_VALUE = -(2.0**32) + 1.0


def apply_mask(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Zero the padded positions of ``x`` (B, C, L); ``mask`` is (B, 1, L) float or None."""
    return x if mask is None else x * mask


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout`` (the attention's dropout on its probabilities)."""
    return F.dropout(x, p, training) if training and p > 0.0 else x


#: Stock ``nn.Dropout`` (the name stays importable from here).
Dropout = nn.Dropout


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d over (B, C, L) whose batch statistics can exclude padded positions.

    With ``masked=False`` (the reference), this is exactly ``nn.BatchNorm1d``: padding zeros count
    in the statistics. With ``masked=True`` the mean and variance in training are taken over the
    real tokens only, and the running statistics are updated with them (unbiased variance, as
    PyTorch does). In eval mode both use the running statistics.
    """

    def __init__(
        self,
        num_features: int,
        masked: bool = False,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ):
        super().__init__(
            num_features, eps, momentum, affine=affine, track_running_stats=track_running_stats
        )
        self.masked = masked

    def sync_batchnorm(self, process_group: object | None = None) -> nn.Module:
        """This layer with its training statistics taken over every process (the form
        ``Trainer(sync_batchnorm=True)`` converts it to; a stock ``SyncBatchNorm`` takes no
        mask)."""
        from .sync_batchnorm import SyncMaskedBatchNorm1d

        return SyncMaskedBatchNorm1d.from_module(self, process_group)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if not (self.masked and self.training and mask is not None):
            return super().forward(x)
        count = mask.sum() * 1.0
        mean = (x * mask).sum(dim=(0, 2)) / count
        centred = (x - mean[None, :, None]) * mask
        var = (centred * centred).sum(dim=(0, 2)) / count
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                unbiased = var * (count / (count - 1.0).clamp(min=1.0))
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.momentum)
                self.running_var.lerp_(unbiased.detach().to(self.running_var.dtype), self.momentum)
                self.num_batches_tracked.add_(1)
        y = (x - mean[None, :, None]) * torch.rsqrt(var + self.eps)[None, :, None]
        return y * self.weight[None, :, None] + self.bias[None, :, None]


class ConvBN(nn.Module):
    """Conv1d(k, 'same') -> mask -> BatchNorm -> mask -> ReLU -> Dropout (ops 0-3, and the stem)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        dropout: float = 0.0,
        masked_bn: bool = False,
    ):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.bn = MaskedBatchNorm1d(out_channels, masked=masked_bn)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = apply_mask(self.conv(x), mask)
        x = apply_mask(self.bn(x, mask), mask)
        return self.dropout(F.relu(x))


def avg_pool3(x: torch.Tensor) -> torch.Tensor:
    """``F.avg_pool1d(x, 3, stride=1, padding=1, count_include_pad=True)`` of x (B, C, L)."""
    return F.avg_pool1d(x, 3, stride=1, padding=1, count_include_pad=True)


def max_pool3(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool1d(x, 3, stride=1, padding=1)`` of x (B, C, L)."""
    return F.max_pool1d(x, 3, stride=1, padding=1)


class AvgPool(nn.Module):
    """AvgPool1d(3, stride 1, pad 1, count_include_pad) -> mask (op 4)."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return apply_mask(avg_pool3(x), mask)


class MaxPool(nn.Module):
    """MaxPool1d(3, stride 1, pad 1) -> mask (op 5).

    ``ignores_padding=True`` fills padded positions with -inf first, so a real token never takes
    the maximum with a padding zero (the reference does, see the module docstring).
    """

    def __init__(self, ignores_padding: bool = False):
        super().__init__()
        self.ignores_padding = ignores_padding

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self.ignores_padding and mask is not None:
            padding = mask == 0
            pooled = max_pool3(x.masked_fill(padding, float("-inf")))
            return pooled.masked_fill(padding, 0.0)  # not a multiply: -inf * 0 is nan
        return apply_mask(max_pool3(x), mask)


class RecurrentOp(nn.Module):
    """Bidirectional GRU over the true lengths, directions summed, then dropout (op 6).

    Packed sequences make the backward direction start at each sequence's last real token; the
    padded positions of the output are zero. Without padding the packing is skipped.
    """

    def __init__(self, channels: int, dropout: float = 0.0):
        super().__init__()
        self.channels = channels
        self.gru = nn.GRU(channels, channels, batch_first=True, bidirectional=True)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # Under CPU autocast (bf16-mixed) the GRU runs in float32, state and weights alike.
            with torch.autocast("cpu", enabled=False):
                return self.forward(x.float(), None if mask is None else mask.float())
        if cpu_kernels.applies(x, "bigru"):
            lengths = None if mask is None else mask.sum(dim=(1, 2)).long()
            out = cpu_kernels.bidirectional_gru_summed(self.gru, x, lengths)
            return self.dropout(apply_mask(out, mask))
        seq = x.transpose(1, 2)  # (B, L, C)
        if mask is None:
            out, _ = self.gru(seq)
        else:
            lengths = mask.sum(dim=(1, 2)).long().cpu()
            packed = pack_padded_sequence(seq, lengths, batch_first=True, enforce_sorted=False)
            out, _ = self.gru(packed)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=seq.shape[1])
        out = out[..., : self.channels] + out[..., self.channels :]
        return self.dropout(out.transpose(1, 2))


class SelfAttention(nn.Module):
    """4-head scaled dot-product self-attention without output projection (op 7).

    Q, K, V = ReLU(Linear(C, C)) each; padded keys are excluded from the softmax; rows of padded
    queries are zeroed; dropout on the attention probabilities; heads concatenated -> mask ->
    BatchNorm -> mask. No residual, FFN or positional encoding (as NNI's ``ops.py``).
    """

    def __init__(
        self, channels: int, num_heads: int = 4, dropout: float = 0.0, masked_bn: bool = False
    ):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"attention width {channels} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.dropout = dropout
        self.query = nn.Linear(channels, channels)
        self.key = nn.Linear(channels, channels)
        self.value = nn.Linear(channels, channels)
        self.bn = MaskedBatchNorm1d(channels, masked=masked_bn)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        # Channels first throughout: Q, K, V are (B, C, L) each, so (B, H, d, L) merges into
        # (B*H, d, L) without a copy (one (B, 3C, L) projection split by head would need three
        # copies forward and a stack backward). Each projection is a 1x1 convolution: the same
        # product as the Linear, channels first (on CPU oneDNN runs it, not the BLAS matmul).
        b, c, length = x.shape
        h = self.num_heads
        d = c // h
        q, k, v = (
            F.relu(F.conv1d(x, lin.weight[:, :, None], lin.bias)).view(b * h, d, length)
            for lin in (self.query, self.key, self.value)
        )
        scores = torch.bmm(q.transpose(1, 2), k).mul_(1.0 / math.sqrt(d))  # (B*H, Lq, Lk)
        scores = scores.view(b, h, length, length)
        if mask is not None:
            scores = scores.masked_fill(mask[:, :, None, :] == 0, ATTENTION_MASK_VALUE)
        probs = dropout(scores.softmax(-1), self.dropout, self.training)
        probs = probs.view(b * h, length, length)
        out = torch.bmm(v, probs.transpose(1, 2)).view(b, c, length)
        out = apply_mask(out, mask)  # zero the rows of padded queries
        return apply_mask(self.bn(out, mask), mask)


def build_op(
    name: str,
    channels: int,
    *,
    cnn_dropout: float = 0.0,
    rnn_dropout: float = 0.0,
    attention_dropout: float = 0.0,
    masked_bn: bool = False,
    maxpool_ignores_padding: bool = False,
) -> nn.Module:
    """Build candidate op ``name`` (one of :data:`OP_NAMES`) at width ``channels``."""
    if name in ("conv1", "conv3", "conv5", "conv7"):
        return ConvBN(channels, channels, int(name[4:]), dropout=cnn_dropout, masked_bn=masked_bn)
    if name == "avg_pool":
        return AvgPool()
    if name == "max_pool":
        return MaxPool(ignores_padding=maxpool_ignores_padding)
    if name == "rnn":
        return RecurrentOp(channels, dropout=rnn_dropout)
    if name == "attention":
        return SelfAttention(channels, dropout=attention_dropout, masked_bn=masked_bn)
    raise ValueError(f"unknown TextNAS op {name!r}; valid ops: {', '.join(OP_NAMES)}")
