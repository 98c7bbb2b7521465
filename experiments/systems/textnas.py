"""TextNAS retraining as an experiment system: configs and the builder the entry point calls.

``python -m experiments train textnas_train_sst2 data.root=/data/glue/SST-2`` composes
:class:`TextNASTrainConfig` (defaults) <- the experiment YAML <- the overrides, then
:func:`build` returns the datamodule (GLUE/SST files) and the retrain module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig

from datamodules.glue import GlueDataModule
from datamodules.synthetic.sentiment import ensure_synthetic_sst
from datamodules.text_tasks import TASKS
from experiments.config import CheckpointConfig, ConfigError, RunConfig, TrainerConfig, to_container
from experiments.registry import RunContext, SystemSpec
from lightning_modules.textnas.metrics import SHORT_NAMES
from lightning_modules.textnas.retrain import TextNASRetrainModule
from search_spaces.text import (
    OP_NAMES,
    Architecture,
    ArchitectureError,
    TextNASOptions,
    TextNASSupernet,
)


@dataclass
class TextDataConfig:
    """A GLUE-style task read by :class:`datamodules.glue.GlueDataModule`."""

    root: str = "data/glue/SST-2"
    task: str = "sst2"
    batch_size: int = 128
    eval_batch_size: Optional[int] = None
    max_length: int = 64
    min_count: int = 1
    lowercase: bool = False
    glove: Optional[str] = None  # path of glove.840B.300d.txt; None = random init
    phrases: bool = True  # SST trees: train on every phrase (NNI), not only sentences
    dev_phrases: bool = False
    use_test_labels: bool = False
    num_workers: int = 0
    bucket: bool = True
    generate: bool = False  # write the synthetic SST-format data set into root if missing


@dataclass
class TextNetworkConfig:
    """The network options of :class:`~search_spaces.text.TextNASOptions` as typed config keys
    (shared by the retrained network and the search's supernet)."""

    width: int = 256
    embed_dim: int = 300
    embed_keep: float = 0.8
    cnn_keep: float = 0.8
    rnn_keep: float = 0.8
    attention_keep: float = 0.8
    final_keep: float = 1.0
    post_bn: str = "always"  # "always" (NNI) or "with_skips" (official code)
    masked_bn: bool = False  # True: BatchNorm statistics over real tokens only (fixed)
    maxpool_ignores_padding: bool = False  # True: max pool never sees padding (fixed)
    pool: str = "mean"


@dataclass
class TextNASModelConfig(TextNetworkConfig):
    """The fixed network: an architecture file (or a shipped name) and its options."""

    architecture: str = "released"  # a shipped name, or a .yaml / NNI .json / official .txt file
    init_from: Optional[str] = None  # a textnas_search checkpoint: start from its shared weights


@dataclass
class TextNASOptimConfig:
    """Adam + per-epoch cosine with warm restarts (NNI ``run_retrain.sh``)."""

    lr: float = 2e-3
    lr_min: float = 5e-6
    eps: float = 1e-3
    weight_decay: float = 1e-6
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: str = "cosine_restarts"  # cosine_restarts | cosine | constant
    t0: int = 10
    t_mult: int = 2
    fused: bool = True  # one fused Adam kernel (CPU and CUDA); False = per-tensor loop


@dataclass
class TextNASTrainConfig(RunConfig):
    system: str = "textnas_train"
    data: TextDataConfig = field(default_factory=TextDataConfig)
    model: TextNASModelConfig = field(default_factory=TextNASModelConfig)
    optim: TextNASOptimConfig = field(default_factory=TextNASOptimConfig)
    # Real global clipping at 5 (the reference's retraining clip is a no-op, §5.3); the
    # datamodule shards batches itself, so Lightning must not add a DistributedSampler.
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(gradient_clip_val=5.0, use_distributed_sampler=False)
    )
    # "auto" = the task's first metric (val/acc, val/mcc for CoLA, val/pearson for STS-B)
    checkpoint: CheckpointConfig = field(default_factory=lambda: CheckpointConfig(monitor="auto", mode="max"))


def check_task(task: str) -> None:
    if task not in TASKS:
        raise ConfigError(f"data.task: unknown task '{task}'; valid tasks: {', '.join(sorted(TASKS))}")


def validate(cfg: DictConfig) -> None:
    check_task(cfg.data.task)
    if cfg.model.width % 4:
        raise ConfigError(f"model.width must be divisible by the 4 attention heads, got {cfg.model.width}")
    if cfg.checkpoint.monitor == "auto":
        cfg.checkpoint.monitor = f"val/{SHORT_NAMES[TASKS[cfg.data.task].metrics[0]]}"


def load_architecture(name_or_path: str) -> Architecture:
    """A shipped architecture by name or an architecture file, as a user-facing error if bad."""
    try:
        return Architecture.load_any(name_or_path)
    except (ArchitectureError, FileNotFoundError) as e:
        raise ConfigError(f"model.architecture: {e}") from e


def checkpoint_vocab(checkpoint: dict) -> list[str]:
    """The vocabulary a text checkpoint stores (the datamodule's state), so that eval, resume
    and derive encode text exactly as the run did."""
    state = next((v for k, v in checkpoint.items() if k.endswith("GlueDataModule")), None)
    if not state or "vocab" not in state:
        raise ConfigError("the checkpoint holds no vocabulary: was it written by a text experiment?")
    return list(state["vocab"])


def build_datamodule(
    data: DictConfig, embed_dim: int, seed: int, vocab: list[str] | None = None,
    use_test_labels: bool | None = None,
) -> GlueDataModule:
    """The datamodule of a :class:`TextDataConfig` (shared by retraining and search)."""
    if data.generate:
        ensure_synthetic_sst(data.root)
    return GlueDataModule(
        root=data.root, task=data.task, batch_size=data.batch_size,
        eval_batch_size=data.eval_batch_size, max_length=data.max_length,
        min_count=data.min_count, lowercase=data.lowercase, glove=data.glove,
        embed_dim=embed_dim, phrases=data.phrases, dev_phrases=data.dev_phrases,
        num_workers=data.num_workers, bucket=data.bucket, seed=seed, vocab=vocab,
        use_test_labels=data.use_test_labels if use_test_labels is None else use_test_labels,
    )  # fmt: skip


def build(cfg: DictConfig, checkpoint: dict | None) -> tuple[TextNASRetrainModule, GlueDataModule]:
    """Datamodule first (its vocabulary sizes the embedding), then the module.

    For ``eval`` the vocabulary and the architecture come from the checkpoint, so the weights
    line up whatever files the user points at now.
    """
    validate(cfg)
    if checkpoint is not None:
        vocab = checkpoint_vocab(checkpoint)
        dm = build_datamodule(cfg.data, cfg.model.embed_dim, cfg.seed, vocab=vocab)
        architecture = Architecture.from_dict(checkpoint["hyper_parameters"]["architecture"])
    else:
        architecture = load_architecture(cfg.model.architecture)
        inherited = inherited_supernet(cfg, architecture) if cfg.model.init_from else None
        vocab = inherited.vocab if inherited is not None else None
        dm = build_datamodule(cfg.data, cfg.model.embed_dim, cfg.seed, vocab=vocab)
    dm.setup("fit")
    network = to_container(cfg.model)
    network.pop("architecture")
    network.pop("init_from")
    module = TextNASRetrainModule(
        architecture=architecture.to_dict(),
        vocab_size=len(dm.vocab),
        num_classes=dm.num_classes,
        pair=dm.is_pair,
        regression=dm.is_regression,
        metrics=list(dm.task_spec.metrics),
        network=network,
        optim=to_container(cfg.optim),
        val_splits=dm.val_split_names,
        test_splits=dm.test_split_names,
        embedding_init=None if checkpoint is not None else dm.embedding_matrix(),
    )
    if checkpoint is None and inherited is not None:
        load_inherited_weights(module, inherited.weights, cfg.model.init_from)
    return module, dm


@dataclass
class _Inherited:
    weights: dict  # the fixed encoder's state dict, from the supernet
    vocab: list[str]


def inherited_supernet(cfg: DictConfig, architecture: Architecture) -> _Inherited:
    """The shared weights of ``architecture`` in a search checkpoint (``model.init_from``),
    with the search's vocabulary (the embedding rows must mean the same words)."""
    path = Path(str(cfg.model.init_from)).expanduser()
    if not path.is_file():
        raise ConfigError(f"model.init_from: no such checkpoint: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    system = (ckpt.get("suite") or {}).get("system")
    if system != "textnas_search":
        raise ConfigError(
            f"model.init_from: {path} is not a textnas_search checkpoint (written by system "
            f"'{system}'); give the last.ckpt of a search run"
        )
    hp = ckpt["hyper_parameters"]
    options = TextNASOptions(**(hp.get("network") or {}))
    for key in ("width", "embed_dim", "post_bn"):
        if getattr(options, key) != cfg.model[key]:
            raise ConfigError(
                f"model.{key}={cfg.model[key]} does not match the supernet in {path} "
                f"({key}={getattr(options, key)}); set model.{key}={getattr(options, key)}"
            )
    supernet = TextNASSupernet(
        hp["vocab_size"], num_layers=hp["num_layers"], k=hp["k"], ops=hp.get("ops") or OP_NAMES,
        options=options, num_classes=hp["num_classes"], pair=hp.get("pair", False),
    )  # fmt: skip
    prefix = "supernet."
    supernet.load_state_dict(
        {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    )
    try:
        supernet.validate_architecture(architecture)
    except ValueError as e:
        raise ConfigError(f"model.init_from: {e}") from e
    return _Inherited(supernet.fixed_encoder_state_dict(architecture), checkpoint_vocab(ckpt))


def load_inherited_weights(module: TextNASRetrainModule, weights: dict, path: object) -> None:
    """Load the supernet's weights of ``architecture`` into the retrain network's encoder (the
    head starts fresh: the retrain task may have other classes)."""
    try:
        module.net.encoder.load_state_dict(weights)
    except RuntimeError as e:
        raise ConfigError(f"model.init_from: {path} does not fit the network: {e}") from e


def after_fit(ctx: RunContext) -> None:
    """Keep the trained architecture next to the checkpoints (a plain, reusable YAML)."""
    if ctx.trainer.is_global_zero:
        Architecture.from_dict(ctx.module.hparams.architecture).save(Path(ctx.run_dir) / "architecture.yaml")


SPEC = SystemSpec(
    name="textnas_train",
    config_cls=TextNASTrainConfig,
    build=build,
    validate=validate,
    after_fit=after_fit,
)
