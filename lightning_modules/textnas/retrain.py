"""Retraining a fixed TextNAS architecture (NNI ``retrain.py``), as a LightningModule.

The recipe: Adam (eps 1e-3, small weight decay), cosine learning rate with warm restarts stepped
once per epoch, cross-entropy (mean squared error for STS-B), global gradient clipping at 5
through the Trainer (the reference's clipping is a no-op: docs/textnas.md, "Quirks of the
reference code"; set ``trainer.gradient_clip_val=null`` for the faithful behaviour). The best
epoch is chosen on the development set; the test set is only evaluated when asked.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.options import as_config, plain
from search_spaces.text import Architecture, TextNASClassifier, TextNASEncoder, TextNASOptions

from .config import RetrainOptimConfig
from .metrics import build_metrics, predictions
from .schedules import follow_max_epochs


class TextNASRetrainModule(L.LightningModule):
    """Train and evaluate a fixed TextNAS architecture on a (GLUE-style) text task.

    Args:
        architecture: the architecture as a dict (``Architecture.to_dict()``).
        vocab_size: rows of the word embedding.
        num_classes: classes of the head; 1 with ``regression=True``.
        pair: sentence-pair task (encode both sentences with the same network).
        regression: mean squared error and a scalar output (STS-B).
        metrics: metric names of the task (``accuracy``, ``f1``, ``mcc``, ``pearson``,
            ``spearman``).
        network: :class:`TextNASOptions` (or a mapping of some of its fields).
        optim: :class:`~lightning_modules.textnas.config.RetrainOptimConfig` (or a mapping).
        val_splits: names of the validation loaders in order (MNLI has two); the first is
            logged as ``val/...``, the others as ``val_<name>/...``.
        embedding_init: optional (vocab_size, embed_dim) GloVe matrix; not a hyper-parameter.
    """

    def __init__(
        self,
        architecture: dict,
        vocab_size: int,
        num_classes: int,
        pair: bool = False,
        regression: bool = False,
        metrics: tuple[str, ...] | list[str] = ("accuracy",),
        network: TextNASOptions | dict | None = None,
        optim: RetrainOptimConfig | dict | None = None,
        val_splits: tuple[str, ...] | list[str] = ("dev",),
        test_splits: tuple[str, ...] | list[str] = ("test",),
        embedding_init: torch.Tensor | None = None,
    ):
        super().__init__()
        options = as_config(TextNASOptions, network)
        self.optim_cfg = as_config(RetrainOptimConfig, optim)
        # Hyper-parameters as plain dicts: checkpoints load with weights_only=True.
        network, optim = plain(options), plain(self.optim_cfg)
        self.save_hyperparameters(ignore=["embedding_init"])
        encoder = TextNASEncoder(
            Architecture.from_dict(architecture), vocab_size, options, embedding_init
        )
        self.net = TextNASClassifier(encoder, num_classes, pair=pair, final_keep=options.final_keep)
        self.regression = regression
        self.val_prefixes = [split_prefix("val", name, i) for i, name in enumerate(val_splits)]
        self.test_prefixes = [split_prefix("test", name, i) for i, name in enumerate(test_splits)]
        self.val_metrics = nn.ModuleList(
            build_metrics(metrics, num_classes, p) for p in self.val_prefixes
        )
        self.test_metrics = nn.ModuleList(
            build_metrics(metrics, num_classes, p) for p in self.test_prefixes
        )
        self.train_metrics = build_metrics(metrics, num_classes, "train/")

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(batch["ids"], batch["mask"], batch.get("ids_b"), batch.get("mask_b"))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.regression:
            return F.mse_loss(logits.squeeze(-1).float(), labels.float())
        return F.cross_entropy(logits.float(), labels)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch)
        loss = self.loss(logits, batch["label"])
        self.train_metrics.update(predictions(logits, self.regression), batch["label"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["label"]))
        return loss

    def on_train_epoch_end(self) -> None:
        self.log_dict(self.train_metrics.compute(), sync_dist=False)
        self.train_metrics.reset()

    def _eval_step(self, batch: dict, metrics: nn.Module, prefix: str) -> None:
        logits = self(batch)
        if "label" not in batch:  # unlabeled split (GLUE test files): nothing to score
            return
        loss = self.loss(logits, batch["label"])
        metrics.update(predictions(logits, self.regression), batch["label"])
        self.log(
            f"{prefix}loss",
            loss,
            batch_size=len(batch["label"]),
            sync_dist=True,
            add_dataloader_idx=False,
        )

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, self.val_metrics[dataloader_idx], self.val_prefixes[dataloader_idx])

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(
            batch, self.test_metrics[dataloader_idx], self.test_prefixes[dataloader_idx]
        )

    def on_validation_epoch_end(self) -> None:
        self._log_metrics(self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_metrics(self.test_metrics)

    def _log_metrics(self, collections: nn.ModuleList) -> None:
        for collection in collections:
            if any(m.update_count for m in collection.values()):
                self.log_dict(collection.compute(), prog_bar=True)
            collection.reset()

    def on_train_start(self) -> None:
        # After Lightning restored the schedulers from a checkpoint (see schedules.py).
        follow_max_epochs(self.lr_schedulers(), self.trainer.max_epochs)

    def configure_optimizers(self) -> Any:
        cfg = self.optim_cfg
        # Lightning cannot clip the gradients of a fused optimizer under mixed precision (it
        # would unscale inside the kernel), so fused Adam is for full precision only.
        precision = str(self.trainer.precision) if self._trainer is not None else "32-true"
        fused = cfg.fused and "mixed" not in precision
        optimizer = torch.optim.Adam(
            self.parameters(),
            lr=cfg.lr,
            betas=tuple(cfg.betas),
            eps=cfg.eps,
            weight_decay=cfg.weight_decay,
            fused=fused,
            foreach=None if fused else True,
        )
        if cfg.schedule == "constant":
            return optimizer
        if cfg.schedule == "cosine_restarts":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
                optimizer, T_0=cfg.t0, T_mult=cfg.t_mult, eta_min=cfg.lr_min
            )
        elif cfg.schedule == "cosine":
            epochs = (
                self.trainer.max_epochs
                if self.trainer.max_epochs and self.trainer.max_epochs > 0
                else cfg.t0
            )
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=epochs, eta_min=cfg.lr_min
            )
        else:
            raise ValueError(
                f"unknown schedule {cfg.schedule!r}: use cosine_restarts, cosine or constant"
            )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }


def split_prefix(stage: str, split: str, index: int) -> str:
    """``val/`` for the first validation split, ``val_<suffix>/`` for the others (MNLI)."""
    if index == 0:
        return f"{stage}/"
    suffix = split.split("_", 1)[-1]
    return f"{stage}_{suffix}/"
