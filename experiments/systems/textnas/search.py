"""TextNAS architecture search as an experiment system (docs/textnas.md, "The search").

``python -m experiments train textnas_search_sst5`` runs the one-shot search
(:class:`~lightning_modules.textnas.search.TextNASSearchModule`); when it ends, rank 0 derives
the final architecture (:func:`~lightning_modules.textnas.derive.derive`: ``search.derive_samples``
samples plus the controller's argmax, ranked on the full validation set) and writes
``architecture.yaml``, ``candidates.yaml`` and ``architecture.png`` into the run folder, next to
``search/epoch_XXX_{ops,arch}.png``. Retrain the result with
``python -m experiments train textnas_train_sst5 model.architecture=<run>/architecture.yaml``.

``python -m experiments derive textnas_search_synthetic ckpt=PATH [search.derive_samples=N]``
redoes the derive from a search checkpoint into a new ``<timestamp>-derive`` folder.

Trainer notes (docs/textnas.md, "Lightning notes"): manual optimization, so
``trainer.gradient_clip_val`` must be null (the module clips with ``self.clip_gradients``); the
datamodule shards batches itself (``use_distributed_sampler=False``); each backward leaves the ops
of the unsampled paths (and the other optimizer's module) without gradient, so the spec asks for
``find_unused_parameters`` and ``trainer.strategy=ddp`` (``preset=trainer/ddp``) runs as
``ddp_find_unused_parameters_true``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from datamodules.text.datamodule import GlueDataModule
from datamodules.text.tasks import TASKS
from experiments.checkpoints import load_run
from experiments.config import CheckpointConfig, ConfigError, RunConfig, TrainerConfig, to_yaml
from experiments.dashboard import Section, line, media
from experiments.registry import RunContext, SystemSpec
from experiments.systems.textnas.retrain import (
    TextDataConfig,
    check_network,
    check_task,
    checkpoint_vocab,
    prepare_process,
)
from experiments.systems.textnas.retrain import build_datamodule as build_text_datamodule
from lightning_modules.textnas.config import (
    ControllerConfig,
    SearchConfig,
    SearchOptimConfig,
    SupernetConfig,
)
from lightning_modules.textnas.derive import derive, write_derived
from lightning_modules.textnas.search import STRATEGIES, TextNASSearchModule
from search_spaces.text import ArchitectureError
from search_spaces.text.strategies import canonical_op_set

INITS = ("pytorch", "xavier")


@dataclass
class TextNASSearchConfig(RunConfig):
    system: str = "textnas_search"
    paper_recipe: bool = False  # as in textnas_train: warn when data.glove is not set
    cpu_kernels: Optional[bool] = None  # as in textnas_train
    data: TextDataConfig = field(
        default_factory=lambda: TextDataConfig(root="data/sst", task="sst5")
    )
    supernet: SupernetConfig = field(default_factory=SupernetConfig)
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    optim: SearchOptimConfig = field(default_factory=SearchOptimConfig)
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(gradient_clip_val=None, use_distributed_sampler=False)
    )
    # No monitor: the argmax architecture's val/acc is a noisy proxy, and derive/resume need the
    # *final* controller and shared weights. (Lightning 2.6 rewrites last.ckpt only when a top-k
    # checkpoint is saved in the same step, so with a monitor last.ckpt would be the best epoch.)
    checkpoint: CheckpointConfig = field(default_factory=lambda: CheckpointConfig(monitor=None))


def validate(cfg: DictConfig) -> None:
    s = cfg.supernet
    check_task(cfg.data.task)
    if TASKS[cfg.data.task].regression:
        raise ConfigError(
            f"data.task={cfg.data.task} is a regression task; the search reward is accuracy"
        )
    if s.num_layers < 1:
        raise ConfigError(f"supernet.num_layers must be at least 1, got {s.num_layers}")
    if s.k < 1 or s.k > s.num_layers:
        raise ConfigError(
            f"supernet.k={s.k} (input among the previous k layers) must be between 1 and "
            f"supernet.num_layers={s.num_layers}"
        )
    try:
        canonical_op_set(list(s.ops))
    except ArchitectureError as e:
        raise ConfigError(f"supernet.ops: {e}") from e
    check_network("supernet", s)
    if s.init not in INITS:
        raise ConfigError(f"supernet.init: unknown init '{s.init}'; valid: {', '.join(INITS)}")
    if cfg.search.strategy not in STRATEGIES:
        raise ConfigError(
            f"search.strategy: unknown strategy '{cfg.search.strategy}'; "
            f"valid: {', '.join(STRATEGIES)}"
        )
    for key in ("controller_every", "controller_steps", "derive_samples"):
        if cfg.search[key] < 0:
            raise ConfigError(f"search.{key} must be >= 0, got {cfg.search[key]}")
    t = cfg.trainer
    if t.use_distributed_sampler:
        raise ConfigError(
            "trainer.use_distributed_sampler must be false (the datamodule shards batches itself)"
        )


def datamodule(cfg: DictConfig, checkpoint: dict | None = None) -> GlueDataModule:
    """The search's datamodule; it never reads test labels."""
    vocab = checkpoint_vocab(checkpoint) if checkpoint is not None else None
    return build_text_datamodule(
        cfg.data, cfg.supernet.embed_dim, cfg.seed, vocab, use_test_labels=False
    )


def build(cfg: DictConfig, checkpoint: dict | None) -> tuple[TextNASSearchModule, GlueDataModule]:
    prepare_process(cfg)
    dm = datamodule(cfg, checkpoint)
    # A rebuilt run has the checkpoint's vocabulary: read only the validation files now (eval
    # and derive need no train file; a resumed fit reads it when it starts).
    dm.setup("validate" if checkpoint is not None else "fit")
    module = TextNASSearchModule(
        vocab_size=len(dm.vocab),
        num_classes=dm.num_classes,
        pair=dm.is_pair,
        supernet=OmegaConf.to_object(cfg.supernet),
        controller=OmegaConf.to_object(cfg.controller),
        search=OmegaConf.to_object(cfg.search),
        optim=OmegaConf.to_object(cfg.optim),
        seed=int(cfg.seed),
        embedding_init=None if checkpoint is not None else dm.embedding_matrix(),
    )
    return module, dm


def full_val_loader(dm: GlueDataModule) -> Any:
    """The whole first validation split, whatever the rank (the datamodule shards by its
    trainer)."""
    trainer = dm.trainer
    dm.trainer = None
    try:
        loader = dm.val_dataloader()
    finally:
        dm.trainer = trainer
    return loader[0] if isinstance(loader, list) else loader


def run_derive(
    cfg: DictConfig, module: TextNASSearchModule, dm: GlueDataModule, out_dir: Path
) -> Path:
    """Derive on the full validation set and write the files into ``out_dir``."""
    generator = torch.Generator().manual_seed(int(cfg.seed) + 1)
    results = derive(
        module.supernet,
        module.sampler,
        full_val_loader(dm),
        num_samples=int(cfg.search.derive_samples),
        generator=generator,
    )
    meta = {
        "experiment": str(cfg.experiment),
        "strategy": str(cfg.search.strategy),
        "child_steps": int(module.child_step),
        "controller_steps": int(module.controller_step),
    }
    return write_derived(results, out_dir, meta)


def after_fit(ctx: RunContext) -> None:
    if ctx.trainer.is_global_zero:
        run_derive(ctx.cfg, ctx.module, ctx.datamodule, Path(ctx.run_dir))


def derive_command(cfg: DictConfig, args: list[str]) -> int:
    """``derive EXPERIMENT ckpt=PATH [k=v ...]``: redo the derive from a search checkpoint.

    The checkpoint's stored config rules the network; this call's ``search.derive_samples``
    and ``output_dir`` are kept."""
    from experiments.trainer import make_run_dir

    if args:
        raise ConfigError(f"derive takes no extra arguments, got: {' '.join(args)}")
    if not cfg.ckpt:
        raise ConfigError("derive needs a search checkpoint: ckpt=PATH")
    run = load_run(
        str(cfg.ckpt),
        str(cfg.experiment),
        [f"search.derive_samples={int(cfg.search.derive_samples)}"],
        system="textnas_search",
        output_dir=str(cfg.output_dir),
    )
    out_dir = make_run_dir(run.cfg, suffix="-derive")
    (out_dir / "config.yaml").write_text(to_yaml(run.cfg))
    run_derive(run.cfg, run.module, run.datamodule, out_dir)
    print(f"run folder: {out_dir}")
    return 0


SPEC = SystemSpec(
    name="textnas_search",
    dashboard=lambda cfg: [
        Section(
            "Controller",
            (
                line("search/reward", "search/baseline"),
                line("search/entropy"),
                line("search/skip_rate"),
                line("val/acc"),
            ),
        ),
        Section(
            "Architectures",
            (media("search/op_frequency"), media("search/architecture")),
        ),
    ],
    summaries=lambda cfg: [("search/reward", "max"), ("val/acc", "max")],
    config_cls=TextNASSearchConfig,
    build=build,
    datamodule=datamodule,
    validate=validate,
    find_unused_parameters=True,  # each backward trains one sampled sub-network
    after_fit=after_fit,
    extra_commands={"derive": derive_command},
)
