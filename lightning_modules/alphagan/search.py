"""alphaGAN architecture search as a LightningModule (docs/alphagan.md, "The search").

One Lightning epoch is one search epoch of the paper, in the order of the reference's
``search.py``:

1. **weight phase**, one training batch per step (first half of the train split): a hinge D step
   on every batch against G samples drawn without a graph; a G step (``-mean D(G(z))``, D and α
   toggled off) whenever the D-step counter is ``0 mod n_critic`` (the reference's global
   counter, checked before it is incremented). The search epoch has ``inner_steps (+2)`` weight
   batches, counted by the module: once they are done, ``on_train_batch_start`` ends the
   Lightning epoch (returns -1). A shorter Lightning epoch (``trainer.limit_train_batches``, int
   or fraction, or a train half with fewer batches) ends the weight phase there.
2. **worst-case phase**, after the last weight step (:class:`~.worst_case.WorstCase`): D_w and
   G_w copied from D and G and trained for ``worst_steps (+2)`` steps each.
3. **architecture phase**: ``arch_steps`` Adam steps on α (lr 3e-4, betas (0.5, 0.999), wd
   1e-3), each on the duality gap of a new batch of the second half (``arch_dataloader``).
   The α gradient comes from ``torch.autograd.grad`` of the gap alone, so nothing of the weight
   phase reaches it, and is averaged over ranks.

Phases 2-3 run inside the ``training_step`` of the search epoch's last weight batch; when the
Lightning epoch ends before that (a batch limit, ``max_steps``, ``max_time``, a stop signal),
they run from ``on_train_epoch_end`` in the Trainer's precision context. Either way they run in
that context and before the epoch's checkpoint is written. Every epoch, rank 0
writes a sample grid of a fixed z (the continuous supernet and the current argmax path), the
heatmap of softmax(α) per edge, the argmax genotype drawn, and the α history table, through the
shared media logger. Counters (``d_step``, ``g_step``, ``arch_step``: host-side integers, so
reading them never waits for the GPU, saved in the state dict as before), the position in the
arch loader and every rank's noise generator are checkpointed, so a resumed search takes the same
next step. Latent noise comes from a per-rank generator (seed + rank): each rank draws its own z.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from tqdm.auto import tqdm

from datamodules.errors import DataError
from lightning_modules.options import as_config, plain
from search_spaces.gan import EDGE_NAMES, GeneratorSupernet, Genotype

from ..callbacks import media_logger
from .config import ModelConfig, SearchConfig, SearchOptimConfig, step_counts
from .discriminator import Discriminator
from .distributed import set_gradients
from .feature_distance import GeneratorDistance, metric_key
from .losses import DualityGap, d_hinge_loss, duality_gap, g_hinge_loss
from .plots import alpha_heatmap, alpha_history_rows, genotype_figure, sample_grid
from .rank_noise import PerRankNoise
from .worst_case import WorstCase

#: Host-side counters, kept in the state dict (``arch_pass``/``arch_cursor``: where the arch
#: loader is).
COUNTERS = ("d_step", "g_step", "arch_step", "arch_pass", "arch_cursor")


class AlphaGANSearch(PerRankNoise, L.LightningModule):
    """The alphaGAN search over a :class:`GeneratorSupernet` against the AutoGAN D.

    Args:
        model, search, optim: :class:`ModelConfig`, :class:`SearchConfig`,
            :class:`SearchOptimConfig` (or mappings of some of their fields).
        seed: seeds α, the weights, the fixed grid z and (+ rank) the noise generators.
    """

    def __init__(
        self,
        model: ModelConfig | Mapping[str, Any] | None = None,
        search: SearchConfig | Mapping[str, Any] | None = None,
        optim: SearchOptimConfig | Mapping[str, Any] | None = None,
        seed: int = 2,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.model_cfg = as_config(ModelConfig, model)
        self.search_cfg = as_config(SearchConfig, search)
        self.optim_cfg = as_config(SearchOptimConfig, optim)
        self.steps = step_counts(self.search_cfg)
        model, search, optim = plain(self.model_cfg), plain(self.search_cfg), plain(self.optim_cfg)
        self.save_hyperparameters()
        m = self.model_cfg
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.generator = GeneratorSupernet(m.latent_dim, m.width, m.bottom_width, conv=m.conv)
            self.discriminator = Discriminator(m.d_width, spectral_norm=m.d_spectral_norm)
            fixed_z = torch.randn(self.search_cfg.num_samples, m.latent_dim)
        if m.channels_last:
            self.generator.to(memory_format=torch.channels_last)
            self.discriminator.to(memory_format=torch.channels_last)
        self.register_buffer("fixed_z", fixed_z)
        # host-side counters (state dict entries through _save_to/_load_from_state_dict)
        self.d_step = self.g_step = self.arch_step = self.arch_pass = self.arch_cursor = 0
        self.epoch_batches = 0  # weight batches of the current search epoch
        self._phases_done = False  # worst-case and α phases of this Lightning epoch have run
        self.init_noise(seed)
        self.worst = WorstCase(fused=self.optim_cfg.fused)
        self.feature_distance = GeneratorDistance()  # the seeded stand-in extractor
        self.alpha_history: list[list[float]] = []
        self._arch_iter: Iterator | None = None

    # ------------------------------------------------------------------- helpers
    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        self.start_rank()

    def _next_arch_batch(self) -> torch.Tensor:
        """The next batch of the arch loader (second half): passes are numbered and shuffled by
        (data seed, pass); ``arch_pass``/``arch_cursor`` say where a resumed search goes on."""
        while True:
            if self._arch_iter is None:
                loader = self.trainer.datamodule.arch_dataloader()
                if hasattr(loader.sampler, "set_epoch"):
                    loader.sampler.set_epoch(self.arch_pass)
                self._arch_iter = iter(loader)
                for _ in range(self.arch_cursor):  # resume inside a pass
                    next(self._arch_iter)
            try:
                batch = next(self._arch_iter)
            except StopIteration:
                if self.arch_cursor == 0:
                    raise DataError(
                        "the second half of the data (worst-case and α phases) holds no full "
                        "batch on this rank: lower data.batch_size or use more images"
                    ) from None
                self._arch_iter = None
                self.arch_pass += 1
                self.arch_cursor = 0
                continue
            self.arch_cursor += 1
            batch = self.trainer.strategy.batch_to_device(batch, self.device)
            return self._real(batch)

    def _gen_batch(self, real: torch.Tensor) -> int:
        return self.search_cfg.gen_batch_size or real.shape[0]

    # -------------------------------------------------------------- weight phase
    def d_loss(self, real: torch.Tensor) -> torch.Tensor:
        """The hinge D loss on ``real`` against G's samples, drawn without G's graph."""
        with torch.no_grad():  # D steps need G's samples, not G's graph
            fake = self.generator(self.z(real.shape[0]))
        return d_hinge_loss(self.discriminator(real), self.discriminator(fake))

    def g_loss(self, n: int) -> torch.Tensor:
        """G's hinge loss ``-mean D(G(z))`` on ``n`` fresh samples."""
        return g_hinge_loss(self.discriminator(self.generator(self.z(n))))

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        """-1 (Lightning: end this epoch) once this search epoch's weight phase is done."""
        return -1 if self._phases_done else None

    def training_step(self, batch: Any, batch_idx: int) -> None:
        g_opt, d_opt, _ = self.optimizers()
        real = self._real(batch)
        n = real.shape[0]
        d_loss = self.d_loss(real)
        d_opt.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        d_opt.step()
        self.log("train/d_loss", d_loss.detach(), prog_bar=True, batch_size=n)
        if self.d_step % self.search_cfg.n_critic == 0:
            with self.toggled_optimizer(g_opt):  # D and α get no gradient from the G step
                g_loss = self.g_loss(self._gen_batch(real))
                g_opt.zero_grad(set_to_none=True)
                self.manual_backward(g_loss)
                g_opt.step()
            self.g_step += 1
            self.log("train/g_loss", g_loss.detach(), prog_bar=True, batch_size=n)
        self.d_step += 1
        self.epoch_batches += 1
        self.log_dict(
            {"search/d_step": float(self.d_step), "search/g_step": float(self.g_step)},
            batch_size=n,
        )
        if self.epoch_batches >= self.steps.weight_batches:
            self._search_phases()

    def _search_phases(self) -> None:
        """The worst-case and α phases that close a search epoch (once per Lightning epoch)."""
        self._worst_case_phase()
        self._arch_phase()
        self.epoch_batches, self._phases_done = 0, True

    # --------------------------------------------------------- worst-case phase
    def worst_lr(self) -> float:
        """Adam lr of the copies: ``worst_lr``, times ``worst_lr_factor`` after the decay epoch."""
        s = self.search_cfg
        epoch = self.current_epoch + 1  # the reference counts epochs from 1
        return s.worst_lr * (s.worst_lr_factor if epoch > s.worst_lr_decay_epoch else 1.0)

    def _progress(self, total: int, desc: str) -> Any:
        show = self.trainer.is_global_zero and self.trainer.progress_bar_callback is not None
        return tqdm(total=total, desc=desc, leave=False, disable=not show)

    def _worst_case_phase(self) -> None:
        steps = self.steps.worst_batches
        lr = self.worst_lr()
        self.worst.refresh(self.generator, self.discriminator, lr, tuple(self.optim_cfg.betas))
        d_losses, g_losses = [], []
        with self._progress(2 * steps, f"epoch {self.current_epoch}: worst-case G_w, D_w") as bar:
            for _ in range(steps):
                real = self._next_arch_batch()
                with torch.no_grad():
                    fake = self.generator(self.z(real.shape[0]))
                d_losses.append(self.worst.d_step(real, fake))
                bar.update()
            for _ in range(steps):
                g_losses.append(
                    self.worst.g_step(
                        self.z(self._gen_batch(real) if steps else 1), self.discriminator
                    )
                )
                bar.update()
        kw = dict(on_step=False, on_epoch=True, batch_size=1)
        if steps:
            self.log("worst/d_loss", torch.stack(d_losses).mean(), **kw)
            self.log("worst/g_loss", torch.stack(g_losses).mean(), **kw)
        self.log("worst/lr", lr, **kw)

    # ------------------------------------------------------- architecture phase
    def gap_terms(
        self, real: torch.Tensor, z_minmax: torch.Tensor, z_maxmin: torch.Tensor
    ) -> DualityGap:
        """The duality gap on ``real`` (docs/alphagan.md, "The search"): G with its live α
        against D_w, and G_w (its own frozen α, or with ``search.maxmin_alpha_grad`` G's live α)
        against D."""
        live = dict(self.generator.alpha) if self.search_cfg.maxmin_alpha_grad else None
        g_w, d_w = self.worst.generator, self.worst.discriminator
        return duality_gap(
            self.generator,
            self.discriminator,
            lambda z: g_w(z, alphas=live),
            d_w,
            real,
            z_minmax,
            z_maxmin,
            maxmin_grad=live is not None,
        )

    def alpha_step(self, real: torch.Tensor, optimizer: Any) -> DualityGap:
        """One α step on the duality gap of ``real``: the gap's gradient alone reaches α
        (``torch.autograd.grad``), averaged over ranks, then ``optimizer.step()``."""
        n, alphas = real.shape[0], self.generator.alphas()
        gap = self.gap_terms(real, self.z(n), self.z(n))
        grads = torch.autograd.grad(gap.gap, alphas)
        optimizer.zero_grad(set_to_none=True)
        set_gradients(alphas, grads)
        optimizer.step()
        return gap

    def _arch_phase(self) -> None:
        *_, a_opt = self.optimizers()
        s, gaps = self.search_cfg, []
        with self._progress(self.steps.arch_steps, f"epoch {self.current_epoch}: α steps") as bar:
            for _ in range(self.steps.arch_steps):
                real = self._next_arch_batch()
                if s.update_alphas:
                    gap = self.alpha_step(real, a_opt)
                    self.arch_step += 1
                else:  # α frozen: the gap is only watched
                    with torch.no_grad():
                        gap = self.gap_terms(real, self.z(real.shape[0]), self.z(real.shape[0]))
                gaps.append(torch.stack([t.detach() for t in gap]))
                bar.update()
        self.worst.release()
        if gaps:
            gap, minmax, maxmin = torch.stack(gaps).mean(0)
            kw = dict(on_step=False, on_epoch=True, batch_size=1, sync_dist=True)
            self.log("search/duality_gap", gap, prog_bar=True, **kw)
            self.log("search/minmax", minmax, **kw)
            self.log("search/maxmin", maxmin, **kw)
        self.log(
            "search/arch_step", float(self.arch_step), on_step=False, on_epoch=True, batch_size=1
        )

    # -------------------------------------------------------------------- epochs
    def on_train_start(self) -> None:
        if self.search_cfg.detect_anomaly:  # the reference's quirk, on request only
            torch.autograd.set_detect_anomaly(True)

    def on_train_end(self) -> None:
        if self.search_cfg.detect_anomaly:
            torch.autograd.set_detect_anomaly(False)

    def on_train_epoch_start(self) -> None:
        self._phases_done = False
        sched = self.lr_schedulers()
        if sched is not None:  # the G-lr drift: epoch e (from 1) runs at the cosine's step e
            with (
                warnings.catch_warnings()
            ):  # stepped before this epoch's optimizer steps, on purpose
                warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
                while sched.last_epoch < self.current_epoch + 1:
                    sched.step()

    def on_train_epoch_end(self) -> None:
        if self.epoch_batches > 0 and not self._phases_done:  # the epoch ended early
            with self.trainer.precision_plugin.train_step_context():
                self._search_phases()
        for name, opt in zip(("g", "d", "alpha"), self.optimizers(), strict=True):
            self.log(f"lr/{name}", opt.param_groups[0]["lr"])  # the G-lr drift shows here
        weights = self.generator.edge_weights()
        self.alpha_history.append([float(v) for e in EDGE_NAMES for v in weights[e]])
        s = self.search_cfg
        if s.eval_every and (self.current_epoch + 1) % s.eval_every == 0:
            key = metric_key("search", self.feature_distance.extractor)  # search/fid_standin
            self.log(key, self.sample_distance(s.eval_samples), sync_dist=False)
        grids = self.sample_grids() if s.plots else None
        if s.plots:
            self._write_figures(grids)

    @torch.no_grad()
    def sample_grids(self) -> dict[str, torch.Tensor]:
        """Images of the fixed z, as in training (BatchNorm batch statistics; buffers kept), from
        the continuous supernet and from the current argmax path."""
        buffers = {k: v.clone() for k, v in self.generator.named_buffers()}
        was_training = self.generator.training
        self.generator.train()
        try:
            genotype = self.generator.genotype()
            out = {
                "continuous": self.generator(self.fixed_z),
                "argmax": self.generator(self.fixed_z, genotype=genotype),
            }
        finally:
            for k, v in self.generator.named_buffers():
                v.copy_(buffers[k])
            self.generator.train(was_training)
        dm = self.trainer.datamodule if self._trainer is not None else None
        to01 = (
            dm.denormalize
            if dm is not None and hasattr(dm, "denormalize")
            else lambda x: (x + 1) / 2
        )
        return {k: sample_grid(to01(v.float())) for k, v in out.items()}

    def sample_distance(self, num_samples: int) -> torch.Tensor:
        """The Fréchet distance on the stand-in extractor (:class:`GeneratorDistance`, not
        comparable to FID) between ``num_samples`` G samples (eval mode; each rank its share)
        and the held-out real images (statistics summed over ranks)."""
        dm = self.trainer.datamodule
        share = -(-num_samples // max(self.trainer.world_size, 1))
        return self.feature_distance(
            self.generator, dm.test_dataloader(), dm.denormalize, self.z, share
        )

    @rank_zero_only
    def _write_figures(self, grids: dict[str, torch.Tensor] | None) -> None:
        epoch, media = self.current_epoch, media_logger(self.trainer)
        for kind, grid in (grids or {}).items():
            media.log_image(f"samples/{kind}", grid, file=f"samples/epoch_{epoch:03d}_{kind}.png")
        weights = {e: w.tolist() for e, w in self.generator.edge_weights().items()}
        media.log_image(
            "search/alpha",
            alpha_heatmap(weights, f"softmax(α) per edge, epoch {epoch}"),
            file=f"search/epoch_{epoch:03d}_alpha.png",
        )
        media.log_image(
            "search/genotype",
            genotype_figure(self.genotype(), f"argmax genotype, epoch {epoch}"),
            file=f"search/epoch_{epoch:03d}_genotype.png",
        )
        columns, rows = alpha_history_rows(self.alpha_history)
        media.log_table("search/alpha_history", columns, rows, file="search/alpha_history.csv")

    def genotype(self) -> Genotype:
        """The current argmax genotype (one op per edge)."""
        return self.generator.genotype()

    # ---------------------------------------------------------------- optimizers
    def configure_optimizers(self) -> Any:
        o, s = self.optim_cfg, self.search_cfg
        betas, fused = tuple(o.betas), o.fused
        g_opt = torch.optim.Adam(
            list(self.generator.weights()), lr=o.g_lr, betas=betas, fused=fused
        )
        d_opt = torch.optim.Adam(
            self.discriminator.parameters(), lr=o.d_lr, betas=betas, fused=fused
        )
        a_opt = torch.optim.Adam(
            self.generator.alphas(),
            lr=o.arch_lr,
            betas=tuple(o.arch_betas),
            weight_decay=o.arch_weight_decay,
            fused=fused,
        )
        if not s.g_lr_drift:
            return [g_opt, d_opt, a_opt]
        drift = torch.optim.lr_scheduler.CosineAnnealingLR(
            g_opt, T_max=s.drift_t_max, eta_min=s.drift_eta_min
        )
        return [g_opt, d_opt, a_opt], [{"scheduler": drift, "interval": "epoch"}]

    # ---------------------------------------------------------------- checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        extra: dict[str, Any] = {
            "noise": self.noise_states(),
            "alpha_history": self.alpha_history,
            "genotype": self.genotype().to_dict(),
            "epoch_batches": self.epoch_batches,  # a checkpoint written inside a search epoch
        }
        checkpoint["alphagan_search"] = extra

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        for name in COUNTERS:  # as the former long buffers: the checkpoint format is unchanged
            destination[prefix + name] = torch.tensor(getattr(self, name), dtype=torch.long)

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors
    ) -> None:
        for name in COUNTERS:
            if prefix + name in state_dict:
                setattr(self, name, int(state_dict[prefix + name]))
            elif strict:
                missing_keys.append(prefix + name)
        own = {k: v for k, v in state_dict.items() if k[len(prefix) :] not in COUNTERS}
        super()._load_from_state_dict(
            own, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors
        )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("alphagan_search") or {}
        self.load_noise_states(state.get("noise"))
        self.alpha_history = [list(r) for r in state.get("alpha_history", [])]
        self.epoch_batches = int(state.get("epoch_batches", 0))
        self._arch_iter = None
