"""The eight TextNAS candidate operations (reference sheet §1.2).

Every op maps ``x`` of shape (B, C, L) (channels first, as in NNI and the official code) and a
padding mask to a tensor of the same shape. The mask is passed as a float tensor of shape
(B, 1, L) with 1 at real tokens, or ``None`` when the batch has no padding at all; skipping the
mask multiplications (and GRU packing) in that case is what makes unpadded batches fast.

Two reference behaviours are switchable (README, "Faithful and fixed behaviour"):

* ``masked_bn``: the reference BatchNorm computes its statistics over all (B, L) positions,
  zero padding included (§5.3 item 5). ``True`` computes them over real tokens only.
* ``maxpool_ignores_padding``: the reference max pool sees the zero-filled padding, so the last
  real token's output depends on whether padding follows it. ``True`` pools over real tokens only.
"""

from __future__ import annotations

import functools
import math
import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .architecture import OP_NAMES
from .bigru import bidirectional_gru_summed

# The reference fills padded attention keys with this value before the softmax.
ATTENTION_MASK_VALUE = -(2.0**32) + 1.0


def apply_mask(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Zero the padded positions of ``x`` (B, C, L); ``mask`` is (B, 1, L) float or None."""
    return x if mask is None else x * mask


def _fast_cpu(x: torch.Tensor) -> bool:
    """Whether the CPU float32 formulations below apply (elsewhere the stock kernels run).

    Not under CPU autocast: there a convolution would run in bf16 where the stock pooling and
    BatchNorm kernels keep float32."""
    return (
        x.dtype == torch.float32 and x.device.type == "cpu" and not torch.is_autocast_enabled("cpu")
    )


_LITTLE_ENDIAN = sys.byteorder == "little"


def _keep_mask(x: torch.Tensor, p: float) -> torch.Tensor | None:
    """A dropout mask for float32 ``x`` on CPU: each element 1 / keep with probability keep,
    else 0; ``None`` where the fast draw does not apply.

    PyTorch draws one 32-bit random number per element for ``rand`` (or per element and then
    some for ``bernoulli_``). Here one 64-bit draw gives four 16-bit lanes, each compared with
    a threshold, so the keep probability is rounded to a multiple of 2^-15: 0.8 becomes
    26214/32768 = 0.79998779 (the mask is scaled by the exact inverse, so the expectation is
    unchanged). Four times fewer draws make a mask about twice as cheap (README.md, "Speed").
    Lanes 0-2 of ``random_()``'s [0, 2^63) hold 16 random bits, lane 3 (the sign half) 15.
    """
    k = round((1.0 - p) * 32768)
    if (
        x.dtype != torch.float32
        or x.device.type != "cpu"
        or not _LITTLE_ENDIAN
        or not 0 < k < 32768
    ):
        return None
    n = x.numel()
    lanes = torch.empty((n + 3) // 4, dtype=torch.int64).random_().view(torch.int16).view(-1, 4)
    keep = torch.empty(lanes.shape, dtype=x.dtype)
    torch.lt(lanes, _lane_thresholds(k), out=keep)
    return keep.view(-1)[:n].view(x.shape).mul_(32768 / k)


@functools.cache
def _lane_thresholds(k: int) -> torch.Tensor:
    """Per-lane thresholds for keep probability k / 32768: the full 16-bit lanes 0-2 are
    uniform on [-32768, 32768), lane 3 on [0, 32768)."""
    return torch.tensor([2 * k - 32768] * 3 + [k], dtype=torch.int16)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout`` with a cheaper mask on CPU in float32 (:func:`_keep_mask`)."""
    if not training or p == 0.0:
        return x
    keep = _keep_mask(x, p) if p < 1.0 else None
    if keep is None:
        return F.dropout(x, p, training)
    return x * keep


class Dropout(nn.Dropout):
    """``nn.Dropout`` through :func:`dropout`: same distribution up to the keep probability's
    rounding to 2^-15, half the cost on CPU; the stock kernel elsewhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return dropout(x, self.p, self.training)


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
        ``Trainer(sync_batchnorm=True)`` converts it to; a stock ``SyncBatchNorm`` takes no mask)."""
        from .sync_batchnorm import SyncMaskedBatchNorm1d

        return SyncMaskedBatchNorm1d.from_module(self, process_group)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if not (self.masked and self.training and mask is not None):
            if self.training and _fast_cpu(x) and x.dim() == 3 and self.momentum is not None:
                return self._train_forward_cpu(x)
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

    def _train_forward_cpu(self, x: torch.Tensor) -> torch.Tensor:
        """Training-mode ``nn.BatchNorm1d`` on (B, C, L) float32 CPU input, the same numbers up to
        rounding.

        PyTorch's CPU kernel reduces each channel with a strided loop; here the statistics are
        plain reductions over (B, L) and the normalisation one fused pass, about half the
        forward time at C=256. The backward is PyTorch's own (:class:`_BatchNormTrain`).
        """
        y, mean, var = _BatchNormTrain.apply(x, self.weight, self.bias, self.eps)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                count = x.numel() // x.shape[1]
                unbiased = var * (count / max(count - 1, 1))
                self.num_batches_tracked.add_(1)
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(unbiased, self.momentum)
        return y


def _per_channel(v: torch.Tensor, length: int) -> torch.Tensor:
    """(C,) -> contiguous (C, L): broadcasting it over the batch only is a fast inner loop,
    broadcasting a (C, 1) column over L is not (TensorIterator, measured 4x slower)."""
    return v[:, None].expand(v.shape[0], length).contiguous()


class _BatchNormTrain(torch.autograd.Function):
    """Batch statistics and normalisation of x (B, C, L): returns y and the batch mean and
    biased variance (for the running statistics; not differentiable)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):  # type: ignore[override]
        length = x.shape[2]
        count = x.numel() // x.shape[1]
        mean = x.sum((0, 2)).div_(count)
        centred = torch.sub(x, _per_channel(mean, length))
        var = torch.mul(centred, centred).sum((0, 2)).div_(count)  # two-pass: no cancellation
        invstd = var.add(eps).rsqrt_()
        scale = invstd if weight is None else invstd * weight
        shift = torch.zeros_like(mean) if bias is None else bias
        y = torch.addcmul(_per_channel(shift, length), centred, _per_channel(scale, length))
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx, grad, _grad_mean, _grad_var):  # type: ignore[override]
        x, weight, mean, invstd = ctx.saved_tensors
        needs = list(ctx.needs_input_grad[:3])
        grad_x, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(
            grad.contiguous(), x, weight, None, None, mean, invstd, True, ctx.eps, needs
        )
        return grad_x, grad_w, grad_b, None


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
    """``F.avg_pool1d(x, 3, stride=1, padding=1, count_include_pad=True)`` of x (B, C, L).

    On CPU in float32 it runs as a depthwise convolution with weights 1/3 (oneDNN): the same
    average up to rounding (a/3 + b/3 + c/3 instead of (a + b + c)/3), about nine times
    cheaper forward plus backward than the pooling kernel at C=256 (README.md, "Speed").
    """
    if not _fast_cpu(x):
        return F.avg_pool1d(x, 3, stride=1, padding=1, count_include_pad=True)
    weight = x.new_full((x.shape[1], 1, 3), 1.0 / 3.0)
    return F.conv1d(x, weight, padding=1, groups=x.shape[1])


class _MaxPool3(torch.autograd.Function):
    """Max pooling, window 3, stride 1, padding 1, over the last axis: the forward is PyTorch's
    kernel without indices; the backward finds which window element each output took by
    comparison, leftmost first as PyTorch's kernel does on ties. PyTorch's training-mode path
    computes and stores int64 indices instead, about five times slower at C=256."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        y = F.max_pool1d(x, 3, stride=1, padding=1)
        ctx.save_for_backward(x, y)
        return y

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, y = ctx.saved_tensors
        # Output t took x[t-1] (left), else x[t] (centre), else x[t+1] (right).
        left = torch.zeros_like(y, dtype=torch.bool)
        torch.eq(x[..., :-1], y[..., 1:], out=left[..., 1:])
        centre = torch.eq(x, y).logical_and_(~left)
        right = (left | centre).logical_not_()
        grad_x = grad * centre
        grad_x[..., :-1] += grad[..., 1:] * left[..., 1:]
        grad_x[..., 1:] += grad[..., :-1] * right[..., :-1]
        return grad_x


def max_pool3(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool1d(x, 3, stride=1, padding=1)`` of x (B, C, L), with the cheaper backward of
    :class:`_MaxPool3` on CPU when a gradient is needed (same values, same gradient routing)."""
    if x.device.type == "cpu" and x.requires_grad and torch.is_grad_enabled():
        return _MaxPool3.apply(x)
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
        if not x.is_cuda:  # same numbers as nn.GRU, faster on CPU (see bigru.py)
            lengths = None if mask is None else mask.sum(dim=(1, 2)).long()
            out = bidirectional_gru_summed(self.gru, x, lengths)
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
    BatchNorm -> mask. No residual, FFN or positional encoding (reference sheet §1.2).
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
        # product as the Linear, run by oneDNN, which on CPU is about twice as fast as the BLAS
        # matmul forward and backward (README.md, "Speed").
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


def reference_attention(x: torch.Tensor, mask: torch.Tensor, op: SelfAttention) -> torch.Tensor:
    """The reference's attention arithmetic written out step by step (eval mode, no dropout).

    Used by the tests to check the fused implementation above against the definition:
    scores QK^T / sqrt(C/4), padded keys set to -2^32+1, softmax, rows times the query mask.
    """
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
