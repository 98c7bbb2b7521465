"""``Trainer(sync_batchnorm=True)`` for layers that are BatchNorms with a forward of their own.

Lightning's ``TorchSyncBatchNorm`` converts every ``_BatchNorm`` subclass into a stock
``torch.nn.SyncBatchNorm``, which drops whatever the subclass's forward does (TextNAS's padding
mask, for one). :class:`SyncBatchNormLayers` asks each layer first: one with a
``sync_batchnorm(process_group)`` method is replaced by what it returns (and converted back by
its ``local_batchnorm()``); any other BatchNorm becomes a stock ``SyncBatchNorm`` as before.
"""

from __future__ import annotations

import torch
from lightning.pytorch.plugins.layer_sync import TorchSyncBatchNorm
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["SyncBatchNormLayers", "convert_sync_batchnorm"]


def convert_sync_batchnorm(module: nn.Module, process_group: object | None = None) -> nn.Module:
    """``module`` with each BatchNorm replaced by its cross-process form (children in place)."""
    if hasattr(module, "sync_batchnorm"):
        return module.sync_batchnorm(process_group)
    if isinstance(module, _BatchNorm):
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group)
    for name, child in module.named_children():
        converted = convert_sync_batchnorm(child, process_group)
        if converted is not child:
            module.add_module(name, converted)
    return module


def _revert_own(module: nn.Module) -> nn.Module:
    if hasattr(module, "local_batchnorm"):
        return module.local_batchnorm()
    for name, child in module.named_children():
        converted = _revert_own(child)
        if converted is not child:
            module.add_module(name, converted)
    return module


class SyncBatchNormLayers(TorchSyncBatchNorm):
    """The layer-sync plugin the suite's trainer uses when ``trainer.sync_batchnorm=true``."""

    def apply(self, model: nn.Module) -> nn.Module:
        return convert_sync_batchnorm(model)

    def revert(self, model: nn.Module) -> nn.Module:
        return super().revert(_revert_own(model))
