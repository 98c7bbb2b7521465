"""What the alphaGAN search and retrain modules share: each rank's own latent noise (seeded by
the run's seed and the rank, saved for every rank and resumed exactly), the real batch in the
configured memory format, and TF32 set from ``model.tf32`` (docs/alphagan.md)."""

from __future__ import annotations

from typing import Any

import torch


class PerRankNoise:
    """Mixin of a LightningModule with ``model_cfg`` (``latent_dim``, ``channels_last``,
    ``tf32``); call :meth:`init_noise` in ``__init__`` and :meth:`start_rank` in ``setup``."""

    def init_noise(self, seed: int) -> None:
        self.seed = int(seed)
        self.noise = torch.Generator().manual_seed(self.seed)
        self._noise_states: list[Any] | None = None

    def start_rank(self) -> None:
        """TF32 as configured; this rank's noise: its saved state, else seeded by the rank."""
        torch.backends.cudnn.allow_tf32 = self.model_cfg.tf32
        torch.backends.cuda.matmul.allow_tf32 = self.model_cfg.tf32
        rank = self.trainer.global_rank
        if self._noise_states is not None and rank < len(self._noise_states):
            self.noise.set_state(self._noise_states[rank])
        else:
            self.noise.manual_seed(self.seed * 1000 + 17 + rank)

    def z(self, n: int) -> torch.Tensor:
        """``n`` latent vectors from this rank's noise generator, on the module's device."""
        z = torch.randn(n, self.model_cfg.latent_dim, generator=self.noise)
        return z.to(self.device, non_blocking=True)

    def _real(self, batch: Any) -> torch.Tensor:
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        if self.model_cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def noise_states(self) -> list[Any]:
        """Every rank's noise state (gathered under DDP), for the checkpoint."""
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1 and torch.distributed.is_initialized():
            ranks: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(ranks, self.noise.get_state())
            return ranks
        return [self.noise.get_state()]

    def load_noise_states(self, states: list[Any] | None) -> None:
        self._noise_states = list(states or []) or None
        if self._noise_states:
            self.noise.set_state(self._noise_states[0])
