"""TextNAS architecture search (ENAS or random one-shot) as a LightningModule.

Reading order = the algorithm (docs/textnas.md, "The search" and "Lightning notes"):

* **child step**, every training batch: sample an architecture (controller under ``no_grad``,
  or :class:`RandomStrategy`), both drawing *only* from :attr:`arch_generator`, a CPU
  ``torch.Generator`` seeded identically on every rank, so all DDP ranks train the same
  sub-network (with ``strategy=ddp_find_unused_parameters_true``: the other ops get no
  gradient); cross-entropy on the batch, ``clip_gradients(norm 5)``, Adam step (NNI: lr 5e-3,
  eps 1e-3, wd 2e-6).
* **controller phase** (ENAS only), every ``controller_every`` child steps (0 = after the last
  child step of each epoch, NNI's 3,000-then-500 rhythm): ``controller_steps`` REINFORCE steps,
  each on the next *validation* batch, drawn in a seeded random order that is equal on every
  rank (:func:`reward_batch_order`; the loader itself is length-sorted); the supernet in eval
  mode (BatchNorm running stats, no dropout) and no grad; reward = accuracy of the sampled
  architecture on that batch, summed over ranks before dividing (identical on every rank);
  ``b <- 0.99 b + 0.01 R``; controller Adam lr 2e-3, clip 5. The test split is never read.
* **validation**: the controller's argmax architecture (random strategy: one fixed sample per
  epoch from a separate generator) on the whole validation set, logged as ``val/acc`` /
  ``val/loss``.
* per epoch: cosine learning rate for the child (``CosineAnnealingLR(T_max=max_epochs)``), a
  per-layer op-frequency heatmap of the epoch's child samples and a drawing of the current
  argmax architecture, written to ``<run_dir>/search/epoch_XXX_{ops,arch}.png`` and to W&B
  through the shared media logger. The controller's reward, baseline,
  entropy, skip rate, loss and sampled-architecture validation-batch accuracy are logged as
  per-epoch means (``search/...``).

``trainer.global_step`` counts steps of *both* optimizers (Lightning #17958); the module keeps
its own counters ``child_step`` and ``controller_step`` (buffers, so in the state dict, and
logged as ``search/child_step`` / ``search/controller_step``). The REINFORCE baseline is a
buffer too; the architecture generator's state and the position in the validation cycle are
saved in the checkpoint (``on_save_checkpoint``), so a resumed search draws the same next
architecture and reads the same next validation batch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics.classification import Accuracy

from search_spaces.text import Architecture, TextNASSupernet
from search_spaces.text.strategies import RandomStrategy

from ..callbacks import media_logger
from ..options import as_config, plain
from .config import (
    ControllerConfig,
    SearchConfig,
    SearchOptimConfig,
    SupernetConfig,
)
from .controller import EnasController, reinforce_step
from .derive import sample_architecture
from .plots import architecture_figure, op_frequency_figure
from .schedules import follow_max_epochs

STRATEGIES = ("enas", "random")


class TextNASSearchModule(L.LightningModule):
    """One-shot TextNAS search over a :class:`TextNASSupernet`.

    Args:
        vocab_size, num_classes, pair: as :class:`TextNASSupernet`.
        supernet: the search space and shared network, a :class:`SupernetConfig`.
        controller: a :class:`ControllerConfig`.
        search: the loop, a :class:`SearchConfig`.
        optim: child optimizer, a :class:`SearchOptimConfig`.
        (Each config may also be a mapping of some of its fields, e.g. a checkpoint's
        hyper-parameters; the dataclasses in ``config.py`` hold the defaults.)
        seed: seeds :attr:`arch_generator` (unless ``search.arch_seed`` is set).
        plot_dir: the run-folder subfolder of the per-epoch figures (default ``search``).
        embedding_init: optional GloVe matrix; not a hyper-parameter.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        pair: bool = False,
        supernet: SupernetConfig | Mapping[str, Any] | None = None,
        controller: ControllerConfig | Mapping[str, Any] | None = None,
        search: SearchConfig | Mapping[str, Any] | None = None,
        optim: SearchOptimConfig | Mapping[str, Any] | None = None,
        seed: int = 1234,
        plot_dir: str | None = None,
        embedding_init: torch.Tensor | None = None,
    ):
        super().__init__()
        self.automatic_optimization = False
        space = as_config(SupernetConfig, supernet)
        self.ctrl_cfg = as_config(ControllerConfig, controller)
        self.search_cfg = as_config(SearchConfig, search)
        self.optim_cfg = as_config(SearchOptimConfig, optim)
        # Hyper-parameters as plain dicts: checkpoints load with weights_only=True.
        supernet, controller = plain(space), plain(self.ctrl_cfg)
        search, optim = plain(self.search_cfg), plain(self.optim_cfg)
        self.save_hyperparameters(ignore=["embedding_init"])
        strategy = self.search_cfg.strategy
        if strategy not in STRATEGIES:
            raise ValueError(
                f"search.strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}"
            )
        if self.search_cfg.controller_every < 0 or self.search_cfg.controller_steps < 0:
            raise ValueError("search.controller_every and search.controller_steps must be >= 0")
        num_layers, k = space.num_layers, space.k
        self.supernet = TextNASSupernet(
            vocab_size,
            num_layers,
            k,
            space.ops,
            space.options(),
            embedding_init,
            num_classes,
            pair,
            init=space.init,
        )
        self.ops: tuple[str, ...] = self.supernet.ops
        self.controller: EnasController | None = None
        if strategy == "enas":
            c = self.ctrl_cfg
            self.controller = EnasController(
                num_layers=num_layers,
                k=k,
                ops=self.ops,
                hidden=c.hidden,
                skip_target=c.skip_target,
                temperature=c.temperature,
                tanh_constant=c.tanh_constant,
            )
        self.random_strategy = RandomStrategy(num_layers, k, self.ops, self.search_cfg.skip_prob)
        arch_seed = self.search_cfg.arch_seed
        self.arch_seed = int(seed if arch_seed is None else arch_seed)
        self.arch_generator = torch.Generator().manual_seed(self.arch_seed)
        # State that must survive a checkpoint (global_step counts both optimizers).
        self.register_buffer("baseline", torch.zeros((), dtype=torch.float64))
        self.register_buffer("child_step", torch.zeros((), dtype=torch.long))
        self.register_buffer("controller_step", torch.zeros((), dtype=torch.long))
        self.register_buffer("val_cursor", torch.zeros((), dtype=torch.long))
        self.register_buffer("op_counts", torch.zeros(num_layers, len(self.ops), dtype=torch.long))
        self.val_acc = Accuracy(task="multiclass", num_classes=max(num_classes, 2))
        self._val_batches: list[list[int]] | None = None
        self._val_order: tuple[int, list[int]] | None = None  # (pass, its batch order)
        self._val_arch: Architecture | None = None

    # ----------------------------------------------------------------- sampling
    @property
    def sampler(self) -> EnasController | RandomStrategy:
        return self.controller if self.controller is not None else self.random_strategy

    def sample_architecture(self) -> Architecture:
        """The next child architecture (no grad), drawn from :attr:`arch_generator` only."""
        return sample_architecture(self.sampler, self.arch_generator)

    def current_architecture(self) -> Architecture:
        """The architecture validated and drawn this epoch: the controller's argmax, or (random
        strategy) one sample from a generator seeded by ``arch_seed`` and the epoch."""
        if self.controller is not None:
            return self.controller.argmax()
        epoch = self.trainer.current_epoch if self._trainer is not None else 0
        g = torch.Generator().manual_seed(self.arch_seed + 7919 * (epoch + 1))
        return self.random_strategy.sample(g)

    # ------------------------------------------------------------------ forward
    def forward(self, batch: dict[str, torch.Tensor], architecture: Architecture) -> torch.Tensor:
        return self.supernet(
            batch["ids"], batch["mask"], architecture, batch.get("ids_b"), batch.get("mask_b")
        )

    # ----------------------------------------------------------------- training
    def _optimizers(self) -> tuple[Any, Any | None]:
        opts = self.optimizers()
        if isinstance(opts, list):
            return opts[0], opts[1]
        return opts, None

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        child_opt, ctrl_opt = self._optimizers()
        # 1. child step on a freshly sampled architecture
        arch = self.sample_architecture()
        self.supernet.train()
        logits = self(batch, arch)
        loss = F.cross_entropy(logits.float(), batch["label"])
        child_opt.zero_grad()
        self.manual_backward(loss)
        self.clip_gradients(
            child_opt,
            gradient_clip_val=self.search_cfg.grad_clip,
            gradient_clip_algorithm="norm",
        )
        child_opt.step()
        self.child_step += 1
        for i, spec in enumerate(arch.layers):
            self.op_counts[i, self.ops.index(spec.op)] += 1
        n = len(batch["label"])
        acc = (logits.argmax(-1) == batch["label"]).float().mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log("train/acc", acc, batch_size=n)
        self.log("search/child_step", self.child_step.float(), batch_size=n)
        self.log("search/arch_skip_rate", arch.skip_rate(), batch_size=n)
        # 2. controller phase
        if ctrl_opt is not None and self._controller_due(batch_idx):
            for _ in range(self.search_cfg.controller_steps):
                self._controller_step(ctrl_opt)

    def _controller_due(self, batch_idx: int) -> bool:
        every = self.search_cfg.controller_every
        if self.search_cfg.controller_steps == 0:
            return False
        if every > 0:
            return int(self.child_step) % every == 0
        last = self.trainer.num_training_batches
        return not math.isfinite(last) or batch_idx == int(last) - 1

    def _reward_loader(self) -> Any:
        loader = self.trainer.datamodule.val_dataloader()
        return loader[0] if isinstance(loader, (list, tuple)) else loader  # MNLI: matched

    def _next_val_batch(self) -> dict[str, torch.Tensor]:
        """The next reward batch: this rank's validation batches in a seeded random order.

        The validation loader is length-sorted, so its own order would drift from long to
        short texts within a controller phase (and the baseline would lag the drift). Each
        pass over the batches is a fresh permutation drawn from ``(arch_seed, pass)``, equal
        on every rank; ``val_cursor`` (a buffer) counts the batches drawn, so a resumed search
        reads the same next batch.
        """
        if self._val_batches is None:
            loader = self._reward_loader()
            if loader.batch_sampler is None:
                raise RuntimeError("the validation loader needs a batch sampler for the reward")
            self._val_batches = [list(b) for b in loader.batch_sampler]
            self._val_collate, self._val_dataset = loader.collate_fn, loader.dataset
        n = len(self._val_batches)
        if n == 0:
            raise RuntimeError(
                "the validation loader is empty: the controller needs validation batches"
            )
        cursor = int(self.val_cursor)
        if self._val_order is None or self._val_order[0] != cursor // n:  # a new pass
            self._val_order = (cursor // n, reward_batch_order(n, self.arch_seed, cursor // n))
        indices = self._val_batches[self._val_order[1][cursor % n]]
        batch = self._val_collate([self._val_dataset[i] for i in indices])
        self.val_cursor += 1
        return self.trainer.strategy.batch_to_device(batch, self.device)

    def _controller_step(self, ctrl_opt: Any) -> None:
        assert self.controller is not None
        c = self.ctrl_cfg
        batch = self._next_val_batch()
        sample = self.controller.sample(self.arch_generator)  # with grad: log p for REINFORCE
        arch = sample.architecture
        self.supernet.eval()
        with torch.no_grad():
            logits = self(batch, arch)
            stats = torch.stack(
                [
                    (logits.argmax(-1) == batch["label"]).sum().float(),
                    torch.tensor(float(len(batch["label"])), device=logits.device),
                ]
            )
        self.supernet.train()
        gathered = self.all_gather(stats)
        if gathered.dim() == 2:  # (world_size, 2)
            gathered = gathered.sum(0)
        reward = gathered[0] / gathered[1]
        loss, new_baseline, r = reinforce_step(
            sample,
            reward,
            float(self.baseline),
            c.entropy_weight,
            c.baseline_decay,
            c.skip_weight,
        )
        ctrl_opt.zero_grad()
        self.manual_backward(loss)
        self.clip_gradients(ctrl_opt, gradient_clip_val=c.grad_clip, gradient_clip_algorithm="norm")
        ctrl_opt.step()
        self.baseline.fill_(new_baseline)
        self.controller_step += 1
        # Epoch-level means over the epoch's controller steps: a controller phase at the end of
        # an epoch rarely falls on a log_every_n_steps boundary, so step-level values would be
        # dropped by the loggers. The step counter is the epoch's maximum (its last value).
        kw = dict(on_step=False, on_epoch=True, batch_size=1, sync_dist=True)  # equal on all ranks
        self.log("search/controller_step", self.controller_step.float(), reduce_fx="max", **kw)
        self.log("search/reward", r, **kw)
        self.log("search/sample_val_acc", float(reward), **kw)
        self.log("search/baseline", float(new_baseline), **kw)
        self.log("search/entropy", float(sample.entropy), **kw)
        self.log("search/skip_rate", arch.skip_rate(), **kw)
        self.log("search/controller_loss", float(loss.detach()), **kw)

    # --------------------------------------------------------------- validation
    def on_validation_epoch_start(self) -> None:
        self._val_arch = self.current_architecture()

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        if dataloader_idx != 0 or "label" not in batch:
            return
        assert self._val_arch is not None
        logits = self(batch, self._val_arch)
        loss = F.cross_entropy(logits.float(), batch["label"])
        self.val_acc.update(logits.argmax(-1), batch["label"])
        self.log(
            "val/loss",
            loss,
            batch_size=len(batch["label"]),
            sync_dist=True,
            add_dataloader_idx=False,
        )

    def on_validation_epoch_end(self) -> None:
        if self.val_acc.update_count:
            self.log("val/acc", self.val_acc.compute(), prog_bar=True)
        self.val_acc.reset()

    # ------------------------------------------------------------------- epochs
    def on_train_epoch_start(self) -> None:
        # Per-epoch cosine: bring the scheduler to the current epoch here rather than stepping
        # it at epoch end, so a checkpoint written at the end of an epoch (ModelCheckpoint saves
        # before the module's on_train_epoch_end) resumes with the right learning rate.
        sched = self.lr_schedulers()
        if sched is not None:
            while sched.last_epoch < self.current_epoch:
                sched.step()
        self.op_counts.zero_()

    def on_train_epoch_end(self) -> None:
        if self.search_cfg.plots and self.trainer.is_global_zero:
            self._write_plots()

    def plot_subdir(self) -> str:
        """Where the per-epoch figures go, relative to the run folder (``plot_dir``)."""
        return str(self.hparams.get("plot_dir") or "search")

    def _write_plots(self) -> None:
        epoch = self.current_epoch
        sub = self.plot_subdir()
        arch = self.current_architecture()
        kind = "argmax" if self.controller is not None else "sampled"
        media = media_logger(self.trainer)
        media.log_image(
            "search/op_frequency",
            op_frequency_figure(
                self.op_counts.cpu().tolist(), self.ops, f"sampled ops, epoch {epoch}"
            ),
            file=f"{sub}/epoch_{epoch:03d}_ops.png",
        )
        media.log_image(
            "search/architecture",
            architecture_figure(arch, title=f"{kind} architecture, epoch {epoch}"),
            file=f"{sub}/epoch_{epoch:03d}_arch.png",
        )

    def on_train_start(self) -> None:
        # After Lightning restored the schedulers from a checkpoint (see schedules.py).
        follow_max_epochs(self.lr_schedulers(), self.trainer.max_epochs)

    # -------------------------------------------------------------- optimizers
    def configure_optimizers(self) -> Any:
        o = self.optim_cfg
        child = torch.optim.Adam(
            self.supernet.parameters(),
            lr=o.lr,
            betas=tuple(o.betas),
            eps=o.eps,
            weight_decay=o.weight_decay,
        )
        epochs = (
            self.trainer.max_epochs
            if self.trainer.max_epochs and self.trainer.max_epochs > 0
            else 10
        )
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(child, T_max=epochs, eta_min=o.eta_min)
        optimizers = [child]
        if self.controller is not None:
            c = self.ctrl_cfg
            optimizers.append(
                torch.optim.Adam(
                    self.controller.parameters(), lr=c.lr, eps=c.eps, weight_decay=c.weight_decay
                )
            )
        return optimizers, [{"scheduler": sched, "interval": "epoch"}]

    # -------------------------------------------------------------- checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = self.arch_generator.get_state()
        extra: dict[str, Any] = {"arch_generator": state}
        trainer = self._trainer
        if (
            trainer is not None
            and trainer.world_size > 1
            and torch.distributed.is_available()
            and torch.distributed.is_initialized()
        ):  # every rank's generator and controller, to check that the ranks stay in step
            gathered: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, state)
            extra["arch_generator_ranks"] = gathered
            if self.controller is not None:
                flat = torch.cat([p.detach().cpu().flatten() for p in self.controller.parameters()])
                controllers: list[Any] = [None] * trainer.world_size
                torch.distributed.all_gather_object(controllers, flat)
                extra["controller_ranks"] = controllers
        checkpoint["textnas_search"] = extra

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("textnas_search")
        if state is not None:
            self.arch_generator.set_state(state["arch_generator"])
        self._val_batches = self._val_order = None


def reward_batch_order(num_batches: int, seed: int, cycle: int) -> list[int]:
    """The order of the reward batches in pass ``cycle``: a permutation seeded by both."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(cycle))
    return torch.randperm(num_batches, generator=g).tolist()
