"""Retraining one alphaGAN genotype as a LightningModule (docs/alphagan.md, "Retraining recipe of
the reference" and "IS and FID").

The plain :class:`~search_spaces.gan.Generator` of the genotype against AutoGAN's
:class:`~.discriminator.Discriminator`, hinge loss, manual optimisation, as the official
``train_geno_gan.py`` / ``functions.py::train`` run it:

* every training batch is one D step (``data.batch_size`` real images against as many G samples
  drawn without G's graph); one G step (batch ``train.gen_batch_size``, D toggled off) whenever
  the global D-step counter is ``0 mod n_critic``, checked before it is incremented;
* after every G step: the linear lr decay if on (both optimizers, by G iteration) and the EMA
  of G (``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn``; the average
  starts from G's initial weights, as the reference's ``copy_params``). BatchNorm buffers are
  G's live ones unless ``train.ema_buffers`` averages them too;
* the run is ``train.g_iters`` G iterations long (``g_iters * n_critic`` D steps), whatever
  the epochs: the module stops the Trainer itself.

Evaluation (the validation loop, every ``train.eval_every`` G iterations and at the end):
``metrics.train_samples`` samples (``metrics.eval_samples`` under ``trainer.validate``) of the
EMA generator in eval mode, each rank its share of a fixed list of seeded noise chunks, scored
by IS and by FID against the scoring statistics and against held-out images; the fixed-z grids
of the EMA and the raw G; the table of evaluations so far. The scoring network and the real
statistics live outside ``state_dict`` (they never enter a checkpoint).

Latent noise in training comes from a per-rank generator (seed + rank), checkpointed with the
counters, so a resumed run takes exactly the uninterrupted run's steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from lightning_modules.options import as_config, plain
from search_spaces.gan import Generator, Genotype, init_weights

from ..callbacks import media_logger
from .config import MetricsConfig, RetrainConfig, RetrainModelConfig, RetrainOptimConfig
from .discriminator import Discriminator
from .losses import d_hinge_loss, g_hinge_loss
from .plots import sample_grid
from .rank_noise import PerRankNoise

__all__ = ["AlphaGANRetrain", "chunk_noise", "score_key"]


def _count(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def score_key(name: str, samples: int, extractor: str) -> str:
    """The logged key of one score: ``val/fid_5k``, ``val/fid_holdout_standin_256``, ...

    ``name`` is ``fid``, ``fid_holdout``, ``is`` or ``is_std``; stand-in scores say so."""
    tag = "" if extractor == "inception" else "_standin"
    return f"val/{name}{tag}_{_count(samples)}"


def chunk_noise(seed: int, index: int, n: int, latent_dim: int) -> torch.Tensor:
    """The latent vectors of scoring chunk ``index``: the same whatever the number of ranks."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(index))
    return torch.randn(n, latent_dim, generator=g)


class AlphaGANRetrain(PerRankNoise, L.LightningModule):
    """Retrain ``genotype`` (a :class:`Genotype` or its ``to_dict()``).

    Args:
        genotype: the architecture (stored in the checkpoint's hyper-parameters).
        model, train, optim, metrics: :class:`RetrainModelConfig`, :class:`RetrainConfig`,
            :class:`RetrainOptimConfig`, :class:`MetricsConfig` (or mappings of their fields).
        seed: seeds the weights, the fixed grid z, the scoring noise and (+ rank) the training
            noise.
    """

    def __init__(
        self,
        genotype: Genotype | Mapping[str, Any],
        model: RetrainModelConfig | Mapping[str, Any] | None = None,
        train: RetrainConfig | Mapping[str, Any] | None = None,
        optim: RetrainOptimConfig | Mapping[str, Any] | None = None,
        metrics: MetricsConfig | Mapping[str, Any] | None = None,
        seed: int = 12345,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.model_cfg = as_config(RetrainModelConfig, model)
        self.train_cfg = as_config(RetrainConfig, train)
        self.optim_cfg = as_config(RetrainOptimConfig, optim)
        self.metrics_cfg = as_config(MetricsConfig, metrics)
        if not isinstance(genotype, Genotype):
            genotype = Genotype.from_dict(dict(genotype), source="checkpoint genotype")
        m, t = self.model_cfg, self.train_cfg
        if m.retarget and genotype.bottom_width != m.bottom_width:
            genotype = genotype.retarget(m.bottom_width)
        self.save_hyperparameters(
            {
                "genotype": genotype.to_dict(),
                "model": plain(m),
                "train": plain(t),
                "optim": plain(self.optim_cfg),
                "metrics": plain(self.metrics_cfg),
                "seed": int(seed),
            }
        )
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.generator = Generator(genotype, m.latent_dim, m.width, m.bottom_width)
            init_weights(self.generator, m.init)
            self.discriminator = Discriminator(m.d_width, spectral_norm=m.d_spectral_norm)
            if m.d_init != "reference":  # the reference's D keeps PyTorch's default init
                init_weights(self.discriminator, m.d_init)
            fixed_z = torch.randn(t.num_samples, m.latent_dim)
        if m.channels_last:
            self.generator.to(memory_format=torch.channels_last)
            self.discriminator.to(memory_format=torch.channels_last)
        self.ema = AveragedModel(
            self.generator,
            multi_avg_fn=get_ema_multi_avg_fn(t.ema_decay),
            use_buffers=t.ema_buffers,
        )
        self.ema.requires_grad_(False)
        self.ema.update_parameters(self.generator)  # the average starts at G's initial weights
        self.register_buffer("fixed_z", fixed_z)
        for name in ("d_step", "g_step"):
            self.register_buffer(name, torch.zeros((), dtype=torch.long))
        self._d_steps: int | None = None  # d_step's host copy: reading the buffer syncs a GPU
        self.init_noise(seed)
        self.evaluations: list[dict[str, float]] = []
        self._scoring: dict[str, Any] = {}  # extractor, metrics, statistics: not in state_dict

    # ------------------------------------------------------------------- helpers
    @property
    def genotype(self) -> Genotype:
        return self.generator.genotype

    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        t = self.train_cfg
        # Evaluate every eval_every G iterations (counted in batches = D steps, across epochs);
        # stopping (train.g_iters) also triggers a last evaluation.
        self.trainer.val_check_interval = t.eval_every * t.n_critic
        self.trainer.check_val_every_n_epoch = None
        self.start_rank()

    def ema_generator(self) -> Generator:
        """The averaged generator, with G's live BatchNorm buffers unless they are averaged."""
        g = self.ema.module
        if not self.train_cfg.ema_buffers:
            with torch.no_grad():
                for mine, live in zip(g.buffers(), self.generator.buffers(), strict=True):
                    mine.copy_(live)
        return g

    def lr_factor(self, g_iter: int) -> float:
        """The reference's ``LinearLrDecay``: 1 up to ``lr_decay_start``, then linear to 0.01 at
        ``g_iters`` (by G iteration; the reference counts the same span in D steps)."""
        t = self.train_cfg
        start, end = t.lr_decay_start, t.g_iters
        if g_iter <= start or end <= start:
            return 1.0
        return 1.0 - 0.99 * min(1.0, (g_iter - start) / (end - start))

    # -------------------------------------------------------------------- steps
    def d_step_loss(self, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(hinge D loss, D(x), D(G(z)))`` on ``real`` against G samples drawn without graph."""
        with torch.no_grad():
            fake = self.generator(self.z(real.shape[0]))
        real_logits, fake_logits = self.discriminator(real), self.discriminator(fake)
        return d_hinge_loss(real_logits, fake_logits), real_logits, fake_logits

    def g_step_loss(self, n: int) -> torch.Tensor:
        """G's hinge loss ``-mean D(G(z))`` on ``n`` fresh samples."""
        return g_hinge_loss(self.discriminator(self.generator(self.z(n))))

    def training_step(self, batch: Any, batch_idx: int) -> None:
        t = self.train_cfg
        g_opt, d_opt = self.optimizers()
        real = self._real(batch)
        n = real.shape[0]
        d_loss, real_logits, fake_logits = self.d_step_loss(real)
        d_opt.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        d_opt.step()
        logs = {
            "train/d_loss": d_loss.detach(),
            "train/d_real": real_logits.detach().float().mean(),
            "train/d_fake": fake_logits.detach().float().mean(),
        }
        if self._d_steps is None:  # once per fit (and after a checkpoint loads)
            self._d_steps = int(self.d_step)
        if self._d_steps % t.n_critic == 0:
            with self.toggled_optimizer(g_opt):  # D gets no gradient from the G step
                g_loss = self.g_step_loss(t.gen_batch_size)
                g_opt.zero_grad(set_to_none=True)
                self.manual_backward(g_loss)
                g_opt.step()
            self.g_step += 1
            schedulers = self.lr_schedulers()
            for sched in schedulers if isinstance(schedulers, list) else [schedulers]:
                if sched is not None:
                    sched.step()
            self.ema.update_parameters(self.generator)
            logs["train/g_loss"] = g_loss.detach()
            self.log("train/g_iter", self.g_step.float(), prog_bar=True, batch_size=n)
        self.d_step += 1
        self._d_steps += 1
        self.log_dict(logs, batch_size=n)
        self.log("train/d_loss_bar", d_loss.detach(), prog_bar=True, logger=False, batch_size=n)
        if batch_idx % 50 == 0 or self._d_steps % t.n_critic == 1:
            for name, opt in zip(("g", "d"), (g_opt, d_opt), strict=True):
                self.log(f"lr/{name}", opt.param_groups[0]["lr"], batch_size=n)
        if self._d_steps >= t.g_iters * t.n_critic:
            self.trainer.should_stop = True

    # -------------------------------------------------------------- evaluation
    def scoring_samples(self) -> int:
        """Samples per evaluation: ``eval_samples`` under ``validate``, else ``train_samples``."""
        m = self.metrics_cfg
        validating = self._trainer is not None and self.trainer.state.fn == "validate"
        return m.eval_samples if validating else m.train_samples

    def _prepare_scoring(self) -> None:
        """Build the extractor and the real statistics once (on every rank)."""
        if "extractor" in self._scoring:
            for metric in self._scoring["metrics"].values():
                metric.to(self.device).reset()
            return
        from .scoring import FrechetDistance, InceptionScore, build_extractor, real_statistics

        m = self.metrics_cfg
        extractor = build_extractor(m.extractor, m.inception_weights).to(self.device).eval()
        dm = self.trainer.datamodule
        metrics: dict[str, Any] = {}
        for name, split, stats in (("fid", "train", m.fid_stats), ("fid_holdout", "test", None)):
            batches, files, tag = dm.real_images(split)  # this rank's shard, its data files
            cache = Path(m.cache_dir) / f"{tag}_{extractor.name}.npz" if m.cache_dir else None
            mu, sigma = real_statistics(
                extractor, batches, fid_stats=stats, cache=cache, data_files=files
            )
            metrics[name] = FrechetDistance(extractor.feature_dim, mu, sigma).to(self.device)
        if m.extractor == "inception":  # the stand-in has no class logits
            metrics["is"] = InceptionScore(splits=m.splits).to(self.device)
        self._scoring.update(extractor=extractor, metrics=metrics)

    def on_fit_start(self) -> None:
        if self.metrics_cfg.train_samples > 0:  # a missing weights/statistics file fails now,
            self._prepare_scoring()  # not at the first evaluation thousands of steps later

    def on_validation_epoch_start(self) -> None:
        if self._trainer is not None and self.trainer.world_size > 1:
            # BatchNorm statistics moved on each rank since DDP last broadcast them: every rank
            # samples with rank 0's, so the sharded scores are those of one generator
            for buffer in self.generator.buffers():
                torch.distributed.broadcast(buffer, src=0)
        if self.scoring_samples() > 0:
            self._prepare_scoring()

    @torch.no_grad()
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        index, n = (int(v) for v in batch)
        if n <= 0 or "extractor" not in self._scoring:
            return
        from .scoring import to_uint8

        z = chunk_noise(self.seed, index, n, self.model_cfg.latent_dim).to(self.device)
        images = to_uint8(self.ema_generator()(z).float())
        features, logits = self._scoring["extractor"](images)
        metrics = self._scoring["metrics"]
        for name in ("fid", "fid_holdout"):
            metrics[name].update(features)
        if "is" in metrics and logits is not None:
            metrics["is"].update(logits)

    def on_validation_epoch_end(self) -> None:
        n = self.scoring_samples()
        row: dict[str, float] = {"g_iter": float(int(self.g_step))}
        if n > 0 and "metrics" in self._scoring:
            kind = self.metrics_cfg.extractor
            metrics = self._scoring["metrics"]
            scores = {name: metrics[name].compute() for name in ("fid", "fid_holdout")}
            if "is" in metrics:
                scores["is"], scores["is_std"] = metrics["is"].compute()
            for name, value in scores.items():
                value = torch.as_tensor(value, dtype=torch.float32, device=self.device)
                self.log(score_key(name, n, kind), value, prog_bar=name == "fid")
                row[name] = float(value)
            for metric in metrics.values():
                metric.reset()
        if self.trainer.sanity_checking:
            return
        self.evaluations.append(row)
        self._write_figures()

    @torch.no_grad()
    def sample_grids(self) -> dict[str, torch.Tensor]:
        """Images of the fixed z from the EMA and the raw G, both in eval mode."""
        out = {}
        for name, g in (("ema", self.ema_generator()), ("raw", self.generator)):
            was = g.training
            g.eval()
            try:
                out[name] = sample_grid((g(self.fixed_z).float() + 1) / 2)
            finally:
                g.train(was)
        return out

    @rank_zero_only
    def _write_figures(self) -> None:
        if self._trainer is None or self.trainer.state.fn != "fit":
            return
        media, g = media_logger(self.trainer), int(self.g_step)
        for kind, grid in self.sample_grids().items():
            media.log_image(f"samples/{kind}", grid, file=f"samples/g{g:06d}_{kind}.png")
        columns = sorted({k for row in self.evaluations for k in row}, key=lambda k: k != "g_iter")
        rows = [[row.get(c, float("nan")) for c in columns] for row in self.evaluations]
        media.log_table("val/evaluations", columns, rows, file="evaluations.csv")

    # ---------------------------------------------------------------- optimizers
    def configure_optimizers(self) -> Any:
        o = self.optim_cfg
        betas, fused = tuple(o.betas), o.fused
        g_opt = torch.optim.Adam(self.generator.parameters(), lr=o.g_lr, betas=betas, fused=fused)
        d_opt = torch.optim.Adam(
            self.discriminator.parameters(), lr=o.d_lr, betas=betas, fused=fused
        )
        if not self.train_cfg.lr_decay:
            return [g_opt, d_opt]
        scheds = [torch.optim.lr_scheduler.LambdaLR(opt, self.lr_factor) for opt in (g_opt, d_opt)]
        return [g_opt, d_opt], [{"scheduler": s, "interval": "step"} for s in scheds]

    # ---------------------------------------------------------------- checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["alphagan_retrain"] = {
            "noise": self.noise_states(),
            "evaluations": self.evaluations,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("alphagan_retrain") or {}
        self.load_noise_states(state.get("noise"))
        self.evaluations = [dict(r) for r in state.get("evaluations", [])]
        self._d_steps = None  # read again from the loaded buffer at the next step
        d_step = checkpoint.get("state_dict", {}).get("d_step")
        trainer = self._trainer
        dm = getattr(trainer, "datamodule", None) if trainer is not None else None
        if d_step is not None and dm is not None and hasattr(dm, "resume_at"):
            dm.resume_at(int(d_step))  # the training data go on where the run stopped
