"""TextNAS retraining as an experiment system: configs and the builder the entry point calls.

``python -m experiments train textnas_train_sst2 data.root=/data/glue/SST-2`` composes
:class:`TextNASTrainConfig` (defaults) <- the experiment YAML <- the overrides, then
:func:`build` returns the datamodule (GLUE/SST files) and the retrain module.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from datamodules.text.datamodule import GlueDataModule, GlueDataOptions
from datamodules.text.synthetic import ensure_synthetic_sst
from datamodules.text.tasks import TASKS
from experiments.checkpoints import load_checkpoint
from experiments.config import CheckpointConfig, ConfigError, RunConfig, TrainerConfig
from experiments.dashboard import Section, line, scalar
from experiments.registry import RunContext, SystemSpec
from experiments.trainer import env_rank
from lightning_modules.options import as_config
from lightning_modules.textnas.config import RetrainOptimConfig, SupernetConfig
from lightning_modules.textnas.metrics import SHORT_NAMES
from lightning_modules.textnas.retrain import TextNASRetrainModule
from search_spaces.text import (
    Architecture,
    ArchitectureError,
    TextNASOptions,
    TextNASSupernet,
    cpu_kernels,
)


@dataclass
class TextDataConfig(GlueDataOptions):
    """A GLUE-style task read by :class:`datamodules.text.datamodule.GlueDataModule` (its options
    and defaults are :class:`~datamodules.text.datamodule.GlueDataOptions`), plus the synthetic
    set switch."""

    generate: bool = False  # write the synthetic SST-format data set into root if missing


@dataclass
class TextNASModelConfig(TextNASOptions):
    """The fixed network: an architecture file (or a shipped name) and its options."""

    architecture: str = "released"  # a shipped name, or a .yaml / NNI .json / official .txt file
    init_from: Optional[str] = None  # a textnas_search checkpoint: start from its shared weights


@dataclass
class TextNASTrainConfig(RunConfig):
    system: str = "textnas_train"
    # True in presets that follow a paper recipe: without data.glove a warning says that the
    # embeddings are random and the numbers not comparable with the paper's.
    paper_recipe: bool = False
    # The hand-written CPU fast paths (search_spaces/text/cpu_kernels.py); false = stock
    # PyTorch ops everywhere; null = the SUITE_CPU_KERNELS environment variable (default on).
    cpu_kernels: Optional[bool] = None
    data: TextDataConfig = field(default_factory=TextDataConfig)
    model: TextNASModelConfig = field(default_factory=TextNASModelConfig)
    optim: RetrainOptimConfig = field(default_factory=RetrainOptimConfig)
    # Real global clipping at 5 (the reference's retraining clip is a no-op: docs/textnas.md); the
    # datamodule shards batches itself, so Lightning must not add a DistributedSampler.
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(gradient_clip_val=5.0, use_distributed_sampler=False)
    )
    # "auto" = the task's first metric (val/acc, val/mcc for CoLA, val/pearson for STS-B)
    checkpoint: CheckpointConfig = field(
        default_factory=lambda: CheckpointConfig(monitor="auto", mode="max")
    )


def check_task(task: str) -> None:
    if task not in TASKS:
        raise ConfigError(
            f"data.task: unknown task '{task}'; valid tasks: {', '.join(sorted(TASKS))}"
        )


def check_network(section: str, node: DictConfig) -> None:
    """The network options' own checks (``TextNASOptions.__post_init__``) as config errors,
    and the sizes: ``width`` and ``embed_dim`` at least 1 (named as the user typed them)."""
    for key in ("width", "embed_dim"):
        if node[key] < 1:
            raise ConfigError(f"{section}.{key} must be >= 1, got {node[key]}")
    try:
        OmegaConf.to_object(node)
    except ValueError as e:
        raise ConfigError(f"{section}: {e}") from e
    if node.width % 4:
        raise ConfigError(
            f"{section}.width must be divisible by the 4 attention heads, got {node.width}"
        )


def validate(cfg: DictConfig) -> None:
    check_task(cfg.data.task)
    check_network("model", cfg.model)


def checkpoint_monitor(cfg: DictConfig) -> str:
    """``checkpoint.monitor=auto``: the task's main metric."""
    return f"val/{SHORT_NAMES[TASKS[cfg.data.task].metrics[0]]}"


def prepare_process(cfg: DictConfig) -> None:
    """Process-wide settings of a TextNAS run: the CPU-kernel switch and the GloVe warning."""
    cpu_kernels.set_enabled(cfg.cpu_kernels)
    warn_if_not_comparable(cfg)


def warn_if_not_comparable(cfg: DictConfig) -> None:
    """One warning line for a paper-recipe preset run without GloVe (rank 0)."""
    if cfg.paper_recipe and not cfg.data.glove and env_rank() == 0:
        print(
            f"warning: {cfg.experiment} follows a paper recipe, but data.glove is not set: the "
            "embeddings are random, so its numbers are not comparable with the paper's",
            file=sys.stderr,
        )


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
        raise ConfigError(
            "the checkpoint holds no vocabulary: was it written by a text experiment?"
        )
    return list(state["vocab"])


def build_datamodule(
    data: DictConfig,
    embed_dim: int,
    seed: int,
    vocab: list[str] | None = None,
    use_test_labels: bool | None = None,
) -> GlueDataModule:
    """The datamodule of a :class:`TextDataConfig` (shared by retraining and search)."""
    if data.generate:
        ensure_synthetic_sst(data.root)
    options = GlueDataOptions(**{k: data[k] for k in GlueDataOptions.__dataclass_fields__})
    if use_test_labels is not None:
        options.use_test_labels = use_test_labels
    return GlueDataModule.from_options(options, embed_dim=embed_dim, seed=seed, vocab=vocab)


def datamodule(cfg: DictConfig, checkpoint: dict | None = None) -> GlueDataModule:
    """The retrain datamodule (the checkpoint's vocabulary when rebuilding a run)."""
    vocab = checkpoint_vocab(checkpoint) if checkpoint is not None else None
    return build_datamodule(cfg.data, cfg.model.embed_dim, cfg.seed, vocab=vocab)


def build(cfg: DictConfig, checkpoint: dict | None) -> tuple[TextNASRetrainModule, GlueDataModule]:
    """Datamodule first (its vocabulary sizes the embedding), then the module.

    When a run is rebuilt from a checkpoint, the vocabulary and the architecture come from it,
    so the weights line up whatever files the user points at now.
    """
    prepare_process(cfg)
    inherited = None
    if checkpoint is not None:
        dm = datamodule(cfg, checkpoint)
        architecture = Architecture.from_dict(checkpoint["hyper_parameters"]["architecture"])
    else:
        architecture = load_architecture(cfg.model.architecture)
        inherited = inherited_supernet(cfg, architecture) if cfg.model.init_from else None
        vocab = inherited.vocab if inherited is not None else None
        dm = build_datamodule(cfg.data, cfg.model.embed_dim, cfg.seed, vocab=vocab)
    # A rebuilt run has the checkpoint's vocabulary: read only the validation files now (eval
    # and derive need no train file; a resumed fit reads it when it starts).
    dm.setup("validate" if checkpoint is not None else "fit")
    module = TextNASRetrainModule(
        architecture=architecture.to_dict(),
        vocab_size=len(dm.vocab),
        num_classes=dm.num_classes,
        pair=dm.is_pair,
        regression=dm.is_regression,
        metrics=list(dm.task_spec.metrics),
        network=as_config(TextNASOptions, OmegaConf.to_object(cfg.model)),
        optim=OmegaConf.to_object(cfg.optim),
        val_splits=dm.val_split_names,
        test_splits=dm.test_split_names,
        embedding_init=None if checkpoint is not None else dm.embedding_matrix(),
    )
    if inherited is not None:
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
    ckpt = load_checkpoint(path, "model.init_from")
    system = (ckpt.get("suite") or {}).get("system")
    if system != "textnas_search":
        raise ConfigError(
            f"model.init_from: {path} is not a textnas_search checkpoint (written by system "
            f"'{system}'); give the last.ckpt of a search run"
        )
    hp = ckpt["hyper_parameters"]
    space = as_config(SupernetConfig, hp["supernet"])
    for key in ("width", "embed_dim", "post_bn"):
        if getattr(space, key) != cfg.model[key]:
            raise ConfigError(
                f"model.{key}={cfg.model[key]} does not match the supernet in {path} "
                f"({key}={getattr(space, key)}); set model.{key}={getattr(space, key)}"
            )
    supernet = TextNASSupernet(
        hp["vocab_size"],
        num_layers=space.num_layers,
        k=space.k,
        ops=space.ops,
        options=space.options(),
        num_classes=hp["num_classes"],
        pair=hp.get("pair", False),
    )
    prefix = "supernet."
    supernet.load_state_dict(
        {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
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
        Architecture.from_dict(ctx.module.hparams.architecture).save(
            Path(ctx.run_dir) / "architecture.yaml"
        )


SPEC = SystemSpec(
    name="textnas_train",
    dashboard=lambda cfg: [
        Section("Accuracy", (line("val/acc", "train/acc"), line("val/loss"), scalar("val/acc"))),
    ],
    summaries=lambda cfg: [("val/acc", "max"), ("test/acc", "max")],
    config_cls=TextNASTrainConfig,
    build=build,
    datamodule=datamodule,
    validate=validate,
    checkpoint_monitor=checkpoint_monitor,
    after_fit=after_fit,
)
