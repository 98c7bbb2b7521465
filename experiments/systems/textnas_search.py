"""TextNAS architecture search as an experiment system (reference sheet textnas.md §2.2-§2.3, §8).

``python -m experiments train textnas_search_sst5`` runs the one-shot search
(:class:`~lightning_modules.textnas.search.TextNASSearchModule`); when it ends, rank 0 derives
the final architecture (:func:`~lightning_modules.textnas.derive.derive`: ``search.derive_samples``
samples plus the controller's argmax, ranked on the full validation set) and writes
``architecture.yaml``, ``candidates.yaml`` and ``architecture.png`` into the run folder, next to
``search/epoch_XXX_{ops,arch}.png``. Retrain the result with
``python -m experiments train textnas_train_sst5 model.architecture=<run>/architecture.yaml``.

``python -m experiments derive textnas_search_synthetic ckpt=PATH [search.derive_samples=N]``
redoes the derive from a search checkpoint into a new ``<timestamp>-derive`` folder.

Trainer notes (lightning.md §2-§3): manual optimization, so ``trainer.gradient_clip_val`` must be
null (the module clips with ``self.clip_gradients``); the datamodule shards batches itself
(``use_distributed_sampler=False``); with more than one device each backward leaves the ops of
the unsampled paths (and the other optimizer's module) without gradient, so the strategy must be
``ddp_find_unused_parameters_true`` (validated below).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import DictConfig

from datamodules.glue import GlueDataModule
from datamodules.text_tasks import TASKS
from experiments.config import (
    CheckpointConfig,
    ConfigError,
    RunConfig,
    TrainerConfig,
    compose,
    to_container,
    to_yaml,
)
from experiments.registry import RunContext, SystemSpec
from experiments.systems.textnas import (
    TextDataConfig,
    TextNetworkConfig,
    check_task,
    checkpoint_vocab,
)
from experiments.systems.textnas import build_datamodule as build_text_datamodule
from lightning_modules.textnas.derive import derive, write_derived
from lightning_modules.textnas.search import STRATEGIES, TextNASSearchModule
from search_spaces.text import OP_NAMES, ArchitectureError
from search_spaces.text.strategies import canonical_op_set


@dataclass
class SupernetConfig(TextNetworkConfig):
    """The search space and the shared network (NNI search: 24 layers, k 5, C 256, keeps 0.5)."""

    embed_keep: float = 0.5
    cnn_keep: float = 0.5
    rnn_keep: float = 0.5
    attention_keep: float = 0.5
    num_layers: int = 24
    k: int = 5
    ops: list[str] = field(default_factory=lambda: list(OP_NAMES))


@dataclass
class ControllerConfig:
    """NNI ``EnasMutator`` as configured for TextNAS (§2.2); Adam as NNI's ``mutator_optim``."""

    hidden: int = 64
    skip_target: float = 0.4
    skip_weight: float = 0.8
    entropy_weight: float = 1e-4
    baseline_decay: float = 0.99
    lr: float = 2e-3
    eps: float = 1e-8  # official code: 1e-3
    weight_decay: float = 0.0  # official code: 1e-3
    grad_clip: float = 5.0
    tanh_constant: Optional[float] = None  # official code: 1.5
    temperature: Optional[float] = None


@dataclass
class SearchConfig:
    """The search loop. ``controller_every=0``: the controller phase follows the last child step
    of every epoch (NNI: 3,000 child steps, then 500 controller steps)."""

    strategy: str = "enas"  # enas | random
    controller_every: int = 0
    controller_steps: int = 500
    derive_samples: int = 20
    skip_prob: float = 0.5  # random strategy only
    grad_clip: float = 5.0  # child, global norm
    arch_seed: Optional[int] = None  # None = seed
    plots: bool = True


@dataclass
class SearchOptimConfig:
    """Child (shared weights) Adam + per-epoch CosineAnnealingLR(T_max=max_epochs) (NNI)."""

    lr: float = 5e-3
    eps: float = 1e-3
    weight_decay: float = 2e-6
    eta_min: float = 1e-5
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class TextNASSearchConfig(RunConfig):
    system: str = "textnas_search"
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


_PLAIN_DDP = ("ddp", "ddp_spawn", "ddp_fork", "ddp_notebook")


def _several_devices(devices: Any, num_nodes: int) -> bool:
    if num_nodes > 1:
        return True
    if isinstance(devices, int):
        return devices > 1 or devices == -1
    if isinstance(devices, str):
        text = devices.strip()
        if text.lstrip("-").isdigit():
            return int(text) > 1 or int(text) == -1
        return "," in text.strip(",")
    try:
        return len(list(devices)) > 1
    except TypeError:
        return False


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
    if s.width % 4:
        raise ConfigError(
            f"supernet.width must be divisible by the 4 attention heads, got {s.width}"
        )
    if cfg.search.strategy not in STRATEGIES:
        raise ConfigError(
            f"search.strategy: unknown strategy '{cfg.search.strategy}'; valid: {', '.join(STRATEGIES)}"
        )
    for key in ("controller_every", "controller_steps", "derive_samples"):
        if cfg.search[key] < 0:
            raise ConfigError(f"search.{key} must be >= 0, got {cfg.search[key]}")
    t = cfg.trainer
    if _several_devices(t.devices, t.num_nodes) and (
        t.strategy in _PLAIN_DDP or t.strategy == "auto"
    ):
        raise ConfigError(
            f"trainer.strategy={t.strategy} with several devices: every backward of the search leaves "
            "unsampled ops without gradient; use trainer.strategy=ddp_find_unused_parameters_true"
        )
    if t.use_distributed_sampler:
        raise ConfigError(
            "trainer.use_distributed_sampler must be false (the datamodule shards batches itself)"
        )


def build_datamodule(cfg: DictConfig, vocab: list[str] | None = None) -> GlueDataModule:
    # The search never reads test labels.
    return build_text_datamodule(cfg.data, cfg.supernet.embed_dim, cfg.seed, vocab, use_test_labels=False)


def build(cfg: DictConfig, checkpoint: dict | None) -> tuple[TextNASSearchModule, GlueDataModule]:
    validate(cfg)
    if checkpoint is not None:
        dm = build_datamodule(cfg, vocab=checkpoint_vocab(checkpoint))
    else:
        dm = build_datamodule(cfg)
    dm.setup("fit")
    network = to_container(cfg.supernet)
    num_layers, k, ops = network.pop("num_layers"), network.pop("k"), network.pop("ops")
    module = TextNASSearchModule(
        vocab_size=len(dm.vocab),
        num_classes=dm.num_classes,
        pair=dm.is_pair,
        num_layers=num_layers,
        k=k,
        ops=list(ops),
        network=network,
        controller=to_container(cfg.controller),
        search=to_container(cfg.search),
        optim=to_container(cfg.optim),
        seed=int(cfg.seed),
        embedding_init=None if checkpoint is not None else dm.embedding_matrix(),
    )
    return module, dm


def full_val_loader(dm: GlueDataModule) -> Any:
    """The whole first validation split, whatever the rank (the datamodule shards by its trainer)."""
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
    results = derive(module.supernet, module.sampler, full_val_loader(dm),
                     num_samples=int(cfg.search.derive_samples), generator=generator)  # fmt: skip
    meta = {"experiment": str(cfg.experiment), "strategy": str(cfg.search.strategy),
            "child_steps": int(module.child_step), "controller_steps": int(module.controller_step)}  # fmt: skip
    return write_derived(results, out_dir, meta)


def after_fit(ctx: RunContext) -> None:
    if ctx.trainer.is_global_zero:
        run_derive(ctx.cfg, ctx.module, ctx.datamodule, Path(ctx.run_dir))


def derive_command(cfg: DictConfig, args: list[str]) -> int:
    """``derive EXPERIMENT ckpt=PATH [k=v ...]``: redo the derive from a search checkpoint."""
    from experiments.run import _suite_meta, load_checkpoint
    from experiments.trainer import make_run_dir

    if args:
        raise ConfigError(f"derive takes no extra arguments, got: {' '.join(args)}")
    if not cfg.ckpt:
        raise ConfigError("derive needs a search checkpoint: ckpt=PATH")
    path = Path(str(cfg.ckpt)).expanduser()
    checkpoint = load_checkpoint(path)
    meta = _suite_meta(checkpoint, path, str(cfg.experiment))
    if meta.get("system") != "textnas_search":
        raise ConfigError(
            f"checkpoint {path} was written by system '{meta.get('system')}', not textnas_search"
        )
    # The stored config rules the network; keep this call's derive settings and output folder.
    stored = dict(meta.get("config") or {})
    stored.update(
        experiment=str(cfg.experiment), resume=None, ckpt=str(path), output_dir=str(cfg.output_dir)
    )
    stored.setdefault("search", {})["derive_samples"] = int(cfg.search.derive_samples)
    run_cfg = compose(
        TextNASSearchConfig, [], [], base=stored, base_origin=f"config stored in {path}"
    )
    module, dm = build(run_cfg, checkpoint)
    module.load_state_dict(checkpoint["state_dict"])
    module.on_load_checkpoint(checkpoint)
    out_dir = make_run_dir(run_cfg, suffix="-derive")
    (out_dir / "config.yaml").write_text(to_yaml(run_cfg))
    run_derive(run_cfg, module, dm, out_dir)
    print(f"run folder: {out_dir}")
    return 0


SPEC = SystemSpec(
    name="textnas_search",
    config_cls=TextNASSearchConfig,
    build=build,
    validate=validate,
    after_fit=after_fit,
    extra_commands={"derive": derive_command},
)
