"""The worst-case copies G_w and D_w of one search epoch (the reference's ``find_worst``).

Each epoch the copies take G's and D's current weights, BatchNorm buffers and α (G_w's α are
frozen, as with the reference's ``--only_update_w_g``), get fresh Adam optimizers, and train:

1. D_w for ``steps`` batches of real images against samples of the *current supernet* G;
2. G_w for ``steps`` steps against the *current* D (not D_w), loss ``-mean D(G_w(z))``.

They are plain modules held outside the LightningModule's tree, so they are neither in its
state dict nor in DDP's reducer; their gradients come from ``torch.autograd.grad`` (nothing is
computed for D's or G's own weights) and are averaged over ranks before each step
(:func:`~.distributed.set_gradients`), so every rank ends the phase with the same copies.
Their optimizers are raw ``torch.optim.Adam`` objects, re-created every epoch as in the
reference; under ``bf16-mixed`` the forwards run in the Trainer's autocast and the weights and
optimizer states stay fp32 (no gradient scaler is needed).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from .distributed import set_gradients
from .losses import d_hinge_loss, g_hinge_loss


class WorstCase:
    """G_w and D_w, created from G and D on the first :meth:`refresh`.

    Args:
        fused: use the fused Adam kernel (CPU and CUDA).
    """

    def __init__(self, fused: bool = True) -> None:
        self.generator: nn.Module | None = None
        self.discriminator: nn.Module | None = None
        self.fused = fused
        self._g_opt: torch.optim.Optimizer | None = None
        self._d_opt: torch.optim.Optimizer | None = None

    def refresh(
        self, generator: nn.Module, discriminator: nn.Module, lr: float, betas: tuple[float, float]
    ) -> None:
        """Copy G and D (weights, buffers, α) into the copies; new Adam optimizers at ``lr``."""
        if self.generator is None:
            self.generator = copy.deepcopy(generator)
            self.discriminator = copy.deepcopy(discriminator)
        else:
            self.generator.load_state_dict(generator.state_dict())
            self.discriminator.load_state_dict(discriminator.state_dict())
        assert self.discriminator is not None
        for a in self.generator.alphas():
            a.requires_grad_(False)  # --only_update_w_g: G_w's α stay as copied
        self.generator.train()
        self.discriminator.train()
        kw = {"lr": lr, "betas": betas, "fused": self.fused}
        self._g_opt = torch.optim.Adam(list(self.generator.weights()), **kw)
        self._d_opt = torch.optim.Adam(list(self.discriminator.parameters()), **kw)

    def d_step(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """One D_w step: hinge loss on ``real`` against ``fake`` (samples of G, no graph)."""
        assert self.discriminator is not None and self._d_opt is not None
        params = list(self.discriminator.parameters())
        loss = d_hinge_loss(self.discriminator(real), self.discriminator(fake))
        grads = torch.autograd.grad(loss, params, materialize_grads=True)
        set_gradients(params, grads)
        self._d_opt.step()
        return loss.detach()

    def g_step(
        self, z: torch.Tensor, discriminator: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """One G_w step: ``-mean D(G_w(z))`` against the current D (its weights untouched)."""
        assert self.generator is not None and self._g_opt is not None
        params = list(self.generator.weights())
        loss = g_hinge_loss(discriminator(self.generator(z)))
        grads = torch.autograd.grad(loss, params, materialize_grads=True)
        set_gradients(params, grads)
        self._g_opt.step()
        return loss.detach()

    def release(self) -> None:
        """Drop the optimizer states (the copies are rebuilt from G and D each epoch)."""
        self._g_opt = self._d_opt = None
