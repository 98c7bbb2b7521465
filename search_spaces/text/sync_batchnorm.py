"""Cross-process BatchNorm for :class:`~search_spaces.text.ops.MaskedBatchNorm1d`.

``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` (what ``Trainer(sync_batchnorm=True)`` runs)
turns every ``_BatchNorm`` subclass into a stock ``SyncBatchNorm``, whose forward takes no
padding mask. :class:`SyncMaskedBatchNorm1d` keeps the mask: in training it sums the per-channel
statistics over all processes (through a differentiable all-reduce, so gradients flow back to
every rank's inputs) and normalises with them, exactly as one process
holding every rank's batch would. ``MaskedBatchNorm1d.sync_batchnorm()`` returns it, which is
what the suite's layer-sync plugin (``lightning_modules/layer_sync.py``) calls.

The statistics follow the layer's own rule: over all (B, L) positions, padding included (the
reference), or over the real tokens only (``masked=True``). Two reductions (mean, then centred
squares) avoid the cancellation of a one-pass variance.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from .ops import MaskedBatchNorm1d

__all__ = ["SyncMaskedBatchNorm1d"]


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the gradient of every input is the sum of the outputs' gradients."""

    @staticmethod
    def forward(ctx, t: torch.Tensor, group: object | None) -> torch.Tensor:  # type: ignore[override]
        ctx.group = group
        out = t.clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


def _all_reduce(t: torch.Tensor, group: object | None) -> torch.Tensor:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size(group) == 1:
        return t
    return _AllReduceSum.apply(t, group)


class SyncMaskedBatchNorm1d(MaskedBatchNorm1d):
    """:class:`MaskedBatchNorm1d` whose training statistics cover every process's batch."""

    process_group: object | None = None

    @classmethod
    def from_module(
        cls, bn: MaskedBatchNorm1d, process_group: object | None = None
    ) -> SyncMaskedBatchNorm1d:
        """The synchronised twin of ``bn``, sharing its parameters and buffers."""
        out = cls(
            bn.num_features,
            masked=bn.masked,
            eps=bn.eps,
            momentum=bn.momentum,
            affine=bn.affine,
            track_running_stats=bn.track_running_stats,
        )
        out.weight, out.bias = bn.weight, bn.bias
        out.running_mean, out.running_var = bn.running_mean, bn.running_var
        out.num_batches_tracked = bn.num_batches_tracked
        out.training = bn.training
        out.process_group = process_group
        return out

    def sync_batchnorm(self, process_group: object | None = None) -> SyncMaskedBatchNorm1d:
        return self

    def local_batchnorm(self) -> MaskedBatchNorm1d:
        """The plain layer again (same parameters and buffers)."""
        out = MaskedBatchNorm1d(
            self.num_features,
            masked=self.masked,
            eps=self.eps,
            momentum=self.momentum,
            affine=self.affine,
            track_running_stats=self.track_running_stats,
        )
        out.weight, out.bias = self.weight, self.bias
        out.running_mean, out.running_var = self.running_mean, self.running_var
        out.num_batches_tracked = self.num_batches_tracked
        out.training = self.training
        return out

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if not self.training or not (dist.is_available() and dist.is_initialized()):
            return super().forward(x, mask)
        weights = mask if (self.masked and mask is not None) else None
        c = x.size(1)
        if weights is None:
            local = torch.cat([x.sum(dim=(0, 2)), x.new_full((1,), float(x.size(0) * x.size(2)))])
        else:
            local = torch.cat([(x * weights).sum(dim=(0, 2)), weights.sum().reshape(1).to(x.dtype)])
        total = _all_reduce(local, self.process_group)
        count = total[c]
        mean = total[:c] / count
        centred = x - mean[None, :, None]
        sq = centred * centred if weights is None else centred * centred * weights
        var = _all_reduce(sq.sum(dim=(0, 2)), self.process_group) / count
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                momentum = 0.1 if self.momentum is None else self.momentum
                unbiased = var * (count / (count - 1.0).clamp(min=1.0))
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(unbiased.detach().to(self.running_var.dtype), momentum)
                self.num_batches_tracked.add_(1)
        y = centred * torch.rsqrt(var + self.eps)[None, :, None]
        if self.affine:
            y = y * self.weight[None, :, None] + self.bias[None, :, None]
        return y
